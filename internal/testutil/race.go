//go:build race

package testutil

// raceDetector is true in a test binary built with -race: the loadlab
// binary its tests run is then built with -race too, so that go test
// -race also watches the servers and balancers the tests start.
const raceDetector = true
