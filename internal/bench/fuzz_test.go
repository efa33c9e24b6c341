package bench

import "testing"

// FuzzParser checks that no response bytes panic the response parser and
// that bytes in small pieces parse as the whole does. The corpus in
// testdata/fuzz is replayed by plain go test.
func FuzzParser(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"))
	f.Add([]byte("HTTP/1.0 200 OK\r\n\r\nuntil close"))
	f.Fuzz(func(t *testing.T, in []byte) {
		whole := parseWhole(in, len(in)+1)
		pieces := parseWhole(in, 2)
		if whole != pieces {
			t.Fatalf("whole %+v, in pieces %+v", whole, pieces)
		}
	})
}

type parseOutcome struct {
	done, failed bool
	res          response
}

func parseWhole(in []byte, piece int) parseOutcome {
	var p parser
	p.reset(false, true)
	for i := 0; i < len(in); i += piece {
		done, err := p.feed(in[i:min(i+piece, len(in))])
		if err != nil {
			return parseOutcome{failed: true}
		}
		if done {
			return parseOutcome{done: true, res: p.res}
		}
	}
	return parseOutcome{done: p.eof(), res: p.res}
}
