// Package loadlab holds what every part of the tool shares about itself:
// its name and version, as sent in the Server header and printed by
// `loadlab version`.
package loadlab

// Version is loadlab's release; responses carry it as Server: loadlab/<Version>.
const Version = "0.1.0"

// ReadyMark is in the line every loadlab server prints on stderr once it
// listens ("loadlab serve: ready on ADDR …"): scripts, the lab and the
// tests wait for it.
const ReadyMark = ": ready on "

// ServerHeader is the value of the Server header on every response.
const ServerHeader = "loadlab/" + Version
