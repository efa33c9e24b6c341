// Package proxyproto writes and reads the PROXY protocol header (HAProxy's
// versions 1 and 2), with which a proxy tells a backend the real client
// address of a connection.
package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// sigV2 starts every version 2 header.
var sigV2 = []byte("\r\n\r\n\x00\r\nQUIT\n")

// Append appends a header of version "v1" or "v2" for a connection from
// src to dst.
func Append(dst []byte, version string, src, dstAddr net.Addr) []byte {
	s, _ := src.(*net.TCPAddr)
	d, _ := dstAddr.(*net.TCPAddr)
	if s == nil || d == nil {
		if version == "v2" {
			return append(append(dst, sigV2...), 0x20, 0x00, 0, 0) // LOCAL: no address
		}
		return append(dst, "PROXY UNKNOWN\r\n"...)
	}
	s4, d4 := s.IP.To4(), d.IP.To4()
	v4 := s4 != nil && d4 != nil
	if version == "v2" {
		dst = append(dst, sigV2...)
		dst = append(dst, 0x21) // version 2, PROXY command
		if v4 {
			dst = append(dst, 0x11, 0, 12) // TCP over IPv4, 12 address bytes
			dst = append(dst, s4...)
			dst = append(dst, d4...)
		} else {
			dst = append(dst, 0x21, 0, 36) // TCP over IPv6, 36 address bytes
			dst = append(dst, s.IP.To16()...)
			dst = append(dst, d.IP.To16()...)
		}
		dst = binary.BigEndian.AppendUint16(dst, uint16(s.Port))
		return binary.BigEndian.AppendUint16(dst, uint16(d.Port))
	}
	family := "TCP6"
	if v4 {
		family = "TCP4"
	}
	return fmt.Appendf(dst, "PROXY %s %s %s %d %d\r\n", family, s.IP, d.IP, s.Port, d.Port)
}

// ErrNotProxy says the input does not start with a PROXY header.
var ErrNotProxy = errors.New("proxy protocol: connection did not start with a PROXY header")

// Parse reads a v1 or v2 header at the start of b. It returns the client
// address it names (nil for UNKNOWN or LOCAL: use the connection's own)
// and the header's length; a length of 0 with no error means more input
// is needed.
func Parse(b []byte) (net.Addr, int, error) {
	switch {
	case len(b) >= len(sigV2) && bytes.Equal(b[:len(sigV2)], sigV2):
		return parseV2(b)
	case len(b) < len(sigV2) && bytes.HasPrefix(sigV2, b):
		return nil, 0, nil // the start of a v2 signature
	case !bytes.HasPrefix(b, []byte("PROXY ")[:min(len(b), 6)]):
		return nil, 0, ErrNotProxy
	}
	nl := bytes.IndexByte(b, '\n')
	if nl < 0 {
		if len(b) > 107 {
			return nil, 0, errors.New("proxy protocol: v1 header longer than 107 bytes")
		}
		return nil, 0, nil
	}
	line := b[:nl+1]
	if len(line) > 107 || !bytes.HasSuffix(line, []byte("\r\n")) || !bytes.HasPrefix(line, []byte("PROXY ")) {
		return nil, 0, errors.New("proxy protocol: malformed v1 header")
	}
	f := strings.Fields(string(line[:len(line)-2]))
	if len(f) >= 2 && f[1] == "UNKNOWN" {
		return nil, len(line), nil
	}
	if len(f) != 6 || (f[1] != "TCP4" && f[1] != "TCP6") {
		return nil, 0, errors.New("proxy protocol: malformed v1 header")
	}
	ip := net.ParseIP(f[2])
	port, err := strconv.Atoi(f[4])
	if ip == nil || err != nil || port < 0 || port > 65535 {
		return nil, 0, errors.New("proxy protocol: bad address in v1 header")
	}
	return &net.TCPAddr{IP: ip, Port: port}, len(line), nil
}

func parseV2(b []byte) (net.Addr, int, error) {
	if len(b) < 16 {
		return nil, 0, nil
	}
	if b[12]>>4 != 2 {
		return nil, 0, errors.New("proxy protocol: unknown v2 version")
	}
	n := 16 + int(binary.BigEndian.Uint16(b[14:16]))
	if len(b) < n {
		return nil, 0, nil
	}
	body := b[16:n]
	if b[12]&0x0f == 0 { // LOCAL
		return nil, n, nil
	}
	switch b[13] {
	case 0x11:
		if len(body) < 12 {
			return nil, 0, errors.New("proxy protocol: short v2 IPv4 addresses")
		}
		return &net.TCPAddr{IP: net.IP(append([]byte(nil), body[0:4]...)), Port: int(binary.BigEndian.Uint16(body[8:10]))}, n, nil
	case 0x21:
		if len(body) < 36 {
			return nil, 0, errors.New("proxy protocol: short v2 IPv6 addresses")
		}
		return &net.TCPAddr{IP: net.IP(append([]byte(nil), body[0:16]...)), Port: int(binary.BigEndian.Uint16(body[32:34]))}, n, nil
	}
	return nil, n, nil // other families: keep the connection's address
}
