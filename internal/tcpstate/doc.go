// Package tcpstate tells whether a TCP connection is still established
// without reading from it: the load tool's --stuck connections and
// cmd/tinysse's stuck-subscriber test ask it whether the server has cut
// them off.
package tcpstate
