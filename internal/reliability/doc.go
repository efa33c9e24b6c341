// Package reliability is loadlab's fault, load and hostile-input suite:
// tests only. Each scenario builds hosts in network namespaces of its own
// (a balancer, four backends and a client joined by a bridge), runs
// loadlab's real commands in them, injects a fault — a killed or frozen
// process, a cut link, a slow host, a reload, a flood of slow or hostile
// clients — and checks with `loadlab bench` what the clients saw.
//
// The scenarios need root and iproute2; without them they skip saying so.
// docs/RELIABILITY.md holds their figures and how to reproduce each.
package reliability
