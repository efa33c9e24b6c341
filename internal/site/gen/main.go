// Command gen draws the embedded default site's images and writes its
// payload files, so the site's binary content is made by the project and
// can be made again: go generate ./internal/site
package main

import (
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
)

func main() {
	dir := "www"
	if len(os.Args) > 1 {
		dir = os.Args[1]
	}
	check(drawJPEG(filepath.Join(dir, "images", "gedung.jpg"), 560, 420, 1))
	check(drawJPEG(filepath.Join(dir, "images", "jaringan.jpg"), 1200, 900, 2))
	for _, p := range []struct {
		name string
		size int
	}{{"payload-1k.bin", 1 << 10}, {"payload-100k.bin", 100 << 10}, {"payload-1m.bin", 1 << 20}} {
		check(os.WriteFile(filepath.Join(dir, p.name), payload(p.size), 0o644))
	}
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

// drawJPEG paints interference rings over a gradient with a little grain,
// which keeps the JPEG large enough to be a real transfer.
func drawJPEG(path string, w, h int, seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, 42))
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	cx1, cy1 := float64(w)*0.3, float64(h)*0.4
	cx2, cy2 := float64(w)*0.7, float64(h)*0.6
	for y := range h {
		for x := range w {
			d1 := math.Hypot(float64(x)-cx1, float64(y)-cy1)
			d2 := math.Hypot(float64(x)-cx2, float64(y)-cy2)
			v := math.Sin(d1/9) + math.Sin(d2/13)
			grain := rng.IntN(48)
			img.Set(x, y, color.RGBA{
				R: uint8(clamp(128 + 60*v + float64(x*64/w) + float64(grain))),
				G: uint8(clamp(90 + 50*math.Cos(d2/17) + float64(y*96/h) + float64(grain))),
				B: uint8(clamp(160 - 40*v + float64(grain))),
				A: 255,
			})
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := jpeg.Encode(f, img, &jpeg.Options{Quality: 85}); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func clamp(v float64) float64 { return math.Max(0, math.Min(255, v)) }

// payload is size bytes of numbered text lines: easy to check by eye, and
// the same every time.
func payload(size int) []byte {
	b := make([]byte, 0, size+64)
	for i := 0; len(b) < size; i++ {
		b = fmt.Appendf(b, "loadlab payload line %06d abcdefghijklmnopqrstuvwxyz0123456789\n", i)
	}
	return b[:size]
}
