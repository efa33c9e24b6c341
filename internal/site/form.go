package site

import (
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"net/url"
	"strconv"

	"loadlab/internal/httpx"
)

// echoForm answers a POST of sending.html's form with the fields it sent,
// one "name: value" line each, in the order they came.
func echoForm(req *httpx.Request, resp *httpx.Response) {
	mediaType, params, err := mime.ParseMediaType(string(req.ContentType))
	if len(req.ContentType) == 0 {
		mediaType, err = "application/x-www-form-urlencoded", nil
	}
	if err != nil {
		resp.SetText(400, "400 Bad Request: malformed Content-Type\n")
		return
	}
	out := resp.Scratch[:0]
	switch mediaType {
	case "application/x-www-form-urlencoded":
		for pair := range bytes.SplitSeq(req.Body, []byte("&")) {
			if len(pair) == 0 {
				continue
			}
			k, v, _ := bytes.Cut(pair, []byte("="))
			name, err1 := url.QueryUnescape(string(k))
			value, err2 := url.QueryUnescape(string(v))
			if err1 != nil || err2 != nil {
				resp.SetText(400, "400 Bad Request: malformed form encoding\n")
				return
			}
			out = appendField(out, name, value)
		}
	case "multipart/form-data":
		r := multipart.NewReader(bytes.NewReader(req.Body), params["boundary"])
		for {
			part, err := r.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				resp.SetText(400, "400 Bad Request: malformed multipart body\n")
				return
			}
			value, err := io.ReadAll(part)
			if err != nil {
				resp.SetText(400, "400 Bad Request: malformed multipart body\n")
				return
			}
			if part.FileName() != "" {
				value = []byte(part.FileName() + " (" + strconv.Itoa(len(value)) + " bytes)")
			}
			out = appendField(out, part.FormName(), string(value))
		}
	default:
		resp.SetText(415, "415 Unsupported Media Type: send application/x-www-form-urlencoded or multipart/form-data\n")
		return
	}
	resp.Status = 200
	resp.ContentType = "text/plain; charset=utf-8"
	resp.Scratch, resp.Body = out, out
}

func appendField(out []byte, name, value string) []byte {
	out = append(out, name...)
	out = append(out, ": "...)
	out = append(out, value...)
	return append(out, '\n')
}
