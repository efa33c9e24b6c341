package httpx

import (
	"sync"
	"sync/atomic"
	"time"
)

// TimeFormat is IMF-fixdate (RFC 9110 §5.6.7), the format of Date and
// Last-Modified.
const TimeFormat = "Mon, 02 Jan 2006 15:04:05 GMT"

// The Date header changes once a second, so it is formatted once a second
// by a ticker and read with one atomic load per response.
var (
	dateOnce  sync.Once
	dateValue atomic.Pointer[[]byte]
)

func updateDate() {
	b := []byte(time.Now().UTC().Format(TimeFormat))
	dateValue.Store(&b)
}

// AppendDate appends the current time in IMF-fixdate, e.g.
// "Sun, 06 Nov 1994 08:49:37 GMT".
func AppendDate(dst []byte) []byte {
	dateOnce.Do(func() {
		updateDate()
		go func() {
			for {
				now := time.Now()
				time.Sleep(now.Truncate(time.Second).Add(time.Second).Sub(now))
				updateDate()
			}
		}()
	})
	return append(dst, *dateValue.Load()...)
}
