package report

import (
	"fmt"
	"image/color"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// chart is one figure of the report, saved as charts/<name>.png and .svg.
type chart struct {
	name, title string
}

// palette tells systems apart, together with a glyph and a dash pattern
// each, so that no two series differ by colour alone.
var palette = []color.RGBA{
	{31, 119, 180, 255}, {214, 39, 40, 255}, {44, 160, 44, 255}, {255, 127, 14, 255}, {148, 103, 189, 255},
	{140, 86, 75, 255}, {227, 119, 194, 255}, {90, 90, 90, 255}, {188, 189, 34, 255}, {23, 190, 207, 255},
}

var glyphs = []draw.GlyphDrawer{
	draw.CircleGlyph{}, draw.SquareGlyph{}, draw.TriangleGlyph{}, draw.CrossGlyph{}, draw.PlusGlyph{},
	draw.RingGlyph{}, draw.BoxGlyph{}, draw.PyramidGlyph{},
}

var dashes = [][]vg.Length{
	nil, {vg.Points(6), vg.Points(3)}, {vg.Points(2), vg.Points(2)}, {vg.Points(8), vg.Points(3), vg.Points(2), vg.Points(3)},
}

// writeCharts draws requests per second, p50, p99 and server CPU per
// request against concurrency, a line per system through the medians,
// with whiskers from the smallest to the largest repetition. The lab's own
// two systems are drawn thicker; the legend sits beside the plot.
func writeCharts(dir string, res *Results) ([]chart, error) {
	charts := []struct {
		chart
		y     string
		value func(*Figures) *float64
	}{
		{chart{"rps", "Requests per second against concurrency (median, whiskers min–max)"}, "requests per second", func(f *Figures) *float64 { return &f.RequestsPerSecond }},
		{chart{"p50", "Median (p50) latency against concurrency"}, "p50 latency (ms)", func(f *Figures) *float64 { return &f.P50 }},
		{chart{"p99", "p99 latency against concurrency"}, "p99 latency (ms)", func(f *Figures) *float64 { return &f.P99 }},
		{chart{"cpu", "Server CPU time per request against concurrency"}, "server CPU (µs per request)", func(f *Figures) *float64 { return &f.ServerCPU }},
	}
	var out []chart
	for _, c := range charts {
		p := plot.New()
		p.Title.Text = c.title
		p.X.Label.Text = "concurrency (-c), log scale"
		p.Y.Label.Text = c.y
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = levelTicks(res.Levels)
		p.Y.Tick.Marker = plainTicks{}
		p.Add(plotter.NewGrid())
		legend := plot.NewLegend()
		i := 0
		for _, s := range res.Systems {
			if len(s.Cells) == 0 {
				continue
			}
			series := cellSeries{cells: s.Cells, value: c.value}
			if c.name == "cpu" && s.Cells[0].Median.ServerCPU == 0 {
				continue // a system loadlab did not start: its CPU is not known
			}
			line, points, err := plotter.NewLinePoints(series)
			if err != nil {
				return nil, err
			}
			whiskers, err := plotter.NewYErrorBars(series)
			if err != nil {
				return nil, err
			}
			col := palette[i%len(palette)]
			line.Color, points.Color, whiskers.Color = col, col, col
			line.Width = vg.Points(1.2)
			if s.LabTable != "" {
				line.Width = vg.Points(3)
			}
			line.Dashes = dashes[i%len(dashes)]
			points.Shape = glyphs[i%len(glyphs)]
			points.Radius = vg.Points(3)
			whiskers.CapWidth = vg.Points(5)
			p.Add(line, whiskers, points)
			name := s.Name
			if s.LabTable != "" {
				name += " (lab)"
			}
			legend.Add(name, line, points)
			i++
		}
		if i == 0 {
			continue // nothing to draw (a CPU chart of systems loadlab did not start)
		}
		p.Y.Min = 0 // a ratio read off the chart is the real one
		if lo, hi := slices.Min(res.Levels), slices.Max(res.Levels); lo == hi {
			// One level: give the log axis a width around it (an empty range
			// would be widened to include 0).
			p.X.Min, p.X.Max = float64(lo)/2, float64(hi)*2
		}
		for _, ext := range []string{"png", "svg"} {
			if err := save(p, legend, filepath.Join(dir, c.name+"."+ext)); err != nil {
				return nil, fmt.Errorf("chart %s: %v", c.name, err)
			}
		}
		out = append(out, c.chart)
	}
	return out, nil
}

// cellSeries is one system's cells as points with whiskers.
type cellSeries struct {
	cells []*Cell
	value func(*Figures) *float64
}

func (s cellSeries) Len() int { return len(s.cells) }
func (s cellSeries) XY(i int) (float64, float64) {
	return float64(s.cells[i].Level), *s.value(&s.cells[i].Median)
}
func (s cellSeries) YError(i int) (float64, float64) {
	c := s.cells[i]
	med := *s.value(&c.Median)
	return med - *s.value(&c.Low), *s.value(&c.High) - med
}

// legendWidth is the strip right of the plot that holds the legend.
const legendWidth = 2.6 * vg.Inch

// save draws the plot with its legend beside it, never over its lines,
// as PNG or SVG by the file's extension.
func save(p *plot.Plot, legend plot.Legend, path string) error {
	w, h := 11*vg.Inch, 5.5*vg.Inch
	var c interface {
		vg.CanvasSizer
		io.WriterTo
	}
	if filepath.Ext(path) == ".svg" {
		c = vgsvg.New(w, h)
	} else {
		c = vgimg.PngCanvas{Canvas: vgimg.New(w, h)}
	}
	dc := draw.New(c)
	p.Draw(draw.Crop(dc, 0, -legendWidth, 0, 0))
	legend.Top, legend.Left = true, true
	legend.Draw(draw.Crop(dc, w-legendWidth+vg.Points(8), 0, 0, -vg.Points(30)))
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// plainTicks labels the value axis as a reader writes numbers: gonum's
// default ticks, without its trailing zeros ("75000.00" becomes "75,000",
// "0.50" becomes "0.5") and with thousands grouped.
type plainTicks struct{}

func (plainTicks) Ticks(min, max float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(min, max)
	for i := range ticks {
		if ticks[i].Label != "" {
			ticks[i].Label = plainNumber(ticks[i].Label)
		}
	}
	return ticks
}

// plainNumber trims a decimal label's trailing zeros and groups the
// thousands of its whole part.
func plainNumber(label string) string {
	whole, frac, hasFrac := strings.Cut(label, ".")
	if hasFrac {
		frac = strings.TrimRight(frac, "0")
	}
	sign := ""
	if strings.HasPrefix(whole, "-") {
		sign, whole = "-", whole[1:]
	}
	if len(whole) > 4 && !strings.ContainsAny(whole, "e+") {
		var b strings.Builder
		for i, d := range whole {
			if i > 0 && (len(whole)-i)%3 == 0 {
				b.WriteByte(',')
			}
			b.WriteRune(d)
		}
		whole = b.String()
	}
	if frac == "" {
		return sign + whole
	}
	return sign + whole + "." + frac
}

// levelTicks marks the levels that ran, on a log axis.
func levelTicks(levels []int) plot.Ticker {
	var ticks plot.ConstantTicks
	for _, l := range levels {
		ticks = append(ticks, plot.Tick{Value: float64(l), Label: fmt.Sprint(l)})
	}
	return ticks
}
