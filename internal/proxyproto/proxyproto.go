// Package proxyproto writes and reads the PROXY protocol header (HAProxy's
// versions 1 and 2), with which a proxy tells a backend the real client
// address of a connection.
package proxyproto

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
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

// Read reads a v1 or v2 header from r and returns the client address it
// names (nil for UNKNOWN or LOCAL, meaning: use the connection's own).
func Read(r *bufio.Reader) (net.Addr, error) {
	peek, err := r.Peek(len(sigV2))
	if err == nil && bytes.Equal(peek, sigV2) {
		return readV2(r)
	}
	line, err := r.ReadSlice('\n')
	if err != nil {
		return nil, errors.New("proxy protocol: no header line")
	}
	if len(line) > 107 || !bytes.HasSuffix(line, []byte("\r\n")) || !bytes.HasPrefix(line, []byte("PROXY ")) {
		return nil, errors.New("proxy protocol: malformed v1 header")
	}
	f := strings.Fields(string(line[:len(line)-2]))
	if len(f) >= 2 && f[1] == "UNKNOWN" {
		return nil, nil
	}
	if len(f) != 6 || (f[1] != "TCP4" && f[1] != "TCP6") {
		return nil, errors.New("proxy protocol: malformed v1 header")
	}
	ip := net.ParseIP(f[2])
	port, err := strconv.Atoi(f[4])
	if ip == nil || err != nil || port < 0 || port > 65535 {
		return nil, errors.New("proxy protocol: bad address in v1 header")
	}
	return &net.TCPAddr{IP: ip, Port: port}, nil
}

func readV2(r *bufio.Reader) (net.Addr, error) {
	head := make([]byte, 16)
	if _, err := io.ReadFull(r, head); err != nil {
		return nil, errors.New("proxy protocol: short v2 header")
	}
	if head[12]>>4 != 2 {
		return nil, errors.New("proxy protocol: unknown v2 version")
	}
	n := int(binary.BigEndian.Uint16(head[14:16]))
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, errors.New("proxy protocol: short v2 addresses")
	}
	if head[12]&0x0f == 0 { // LOCAL
		return nil, nil
	}
	switch head[13] {
	case 0x11:
		if n < 12 {
			return nil, errors.New("proxy protocol: short v2 IPv4 addresses")
		}
		return &net.TCPAddr{IP: net.IP(body[0:4]), Port: int(binary.BigEndian.Uint16(body[8:10]))}, nil
	case 0x21:
		if n < 36 {
			return nil, errors.New("proxy protocol: short v2 IPv6 addresses")
		}
		return &net.TCPAddr{IP: net.IP(body[0:16]), Port: int(binary.BigEndian.Uint16(body[32:34]))}, nil
	}
	return nil, nil // other families: keep the connection's address
}
