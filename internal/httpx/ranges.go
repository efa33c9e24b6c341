package httpx

import (
	"bytes"
	"strconv"
)

// ByteRange is one part of a resource a Range request asks for: N bytes
// from Start.
type ByteRange struct {
	Start, N int64
}

// maxRanges bounds the ranges of one request; more are not served as
// ranges at all (the whole resource goes), so that a request of
// thousands of tiny overlapping ranges costs no more than the file.
const maxRanges = 16

// ParseRange reads a Range value (RFC 9110 §14.2) for a resource of size
// bytes. It returns the satisfiable ranges; ok is false when the header
// is to be ignored (another unit, no range, too many ranges), and an
// empty list with ok means none is satisfiable: 416. As nginx and Go's
// net/http do, a range that cannot be read (not digits, a number past
// int64) makes the whole header unsatisfiable, and one whose last byte
// comes before its first is skipped, as one past the end is: RFC 9110
// lets a server ignore or reject either.
func ParseRange(v []byte, size int64) (ranges []ByteRange, ok bool) {
	v = trimOWS(v)
	if !hasPrefixFold(v, "bytes=") {
		return nil, false
	}
	v = v[len("bytes="):]
	specs := 0
	for len(v) > 0 {
		var spec []byte
		spec, v, _ = bytes.Cut(v, []byte(","))
		spec = trimOWS(spec)
		if len(spec) == 0 {
			continue // empty list elements are allowed
		}
		if specs++; specs > maxRanges {
			return nil, false
		}
		first, last, found := bytes.Cut(spec, []byte("-"))
		if !found {
			return nil, true
		}
		var r ByteRange
		switch {
		case len(first) == 0: // -suffix: the last bytes
			n, ok := parseDecimal(last)
			if !ok {
				return nil, true
			}
			if n == 0 || size == 0 {
				continue // unsatisfiable
			}
			n = min(n, size)
			r = ByteRange{Start: size - n, N: n}
		default:
			a, ok := parseDecimal(first)
			if !ok {
				return nil, true
			}
			b := size - 1
			if len(last) > 0 {
				if b, ok = parseDecimal(last); !ok {
					return nil, true
				}
				b = min(b, size-1)
			}
			if a >= size || b < a {
				continue // unsatisfiable
			}
			r = ByteRange{Start: a, N: b - a + 1}
		}
		ranges = append(ranges, r)
	}
	if specs == 0 {
		return nil, false
	}
	return ranges, true
}

// AppendContentRange appends a Content-Range value: "bytes a-b/size" for
// r, or "bytes */size" for an unsatisfiable request when r is nil.
func AppendContentRange(dst []byte, r *ByteRange, size int64) []byte {
	dst = append(dst, "bytes "...)
	if r == nil {
		dst = append(dst, '*')
	} else {
		dst = strconv.AppendInt(dst, r.Start, 10)
		dst = append(dst, '-')
		dst = strconv.AppendInt(dst, r.Start+r.N-1, 10)
	}
	dst = append(dst, '/')
	return strconv.AppendInt(dst, size, 10)
}

// AppendByteranges appends a multipart/byteranges body (RFC 9110 §14.6):
// each of ranges of a resource of size bytes and type contentType, with
// its own Content-Type and Content-Range, between boundary lines; part
// gives a range's bytes. The response's Content-Type is
// "multipart/byteranges; boundary=" and the boundary.
func AppendByteranges(dst []byte, boundary, contentType string, size int64, ranges []ByteRange, part func(ByteRange) ([]byte, error)) ([]byte, error) {
	for _, r := range ranges {
		dst = append(append(dst, "\r\n--"...), boundary...)
		dst = append(append(dst, "\r\nContent-Type: "...), contentType...)
		dst = AppendContentRange(append(dst, "\r\nContent-Range: "...), &r, size)
		dst = append(dst, "\r\n\r\n"...)
		b, err := part(r)
		if err != nil {
			return dst, err
		}
		dst = append(dst, b...)
	}
	return append(append(append(dst, "\r\n--"...), boundary...), "--\r\n"...), nil
}
