// Package loadlab holds what every part of the tool shares about itself:
// its name and version, as sent in the Server header and printed by
// `loadlab version`.
package loadlab

// Version is loadlab's release; responses carry it as Server: loadlab/<Version>.
const Version = "0.1.0"

// ServerHeader is the value of the Server header on every response.
const ServerHeader = "loadlab/" + Version
