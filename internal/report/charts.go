package report

import (
	"fmt"
	"image/color"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"loadlab/internal/bench"
)

// chart is one figure of the report, saved as charts/<name>.png and .svg.
type chart struct {
	name, title string
}

// palette tells systems apart; it repeats with a dashed line past its end.
var palette = []color.RGBA{
	{31, 119, 180, 255}, {214, 39, 40, 255}, {44, 160, 44, 255}, {255, 127, 14, 255}, {148, 103, 189, 255},
	{140, 86, 75, 255}, {227, 119, 194, 255}, {127, 127, 127, 255}, {188, 189, 34, 255}, {23, 190, 207, 255},
}

// writeCharts draws requests per second, p50 and p99 against concurrency,
// a line per system.
func writeCharts(dir string, res *Results) ([]chart, error) {
	charts := []struct {
		chart
		y     string
		value func(*bench.Summary) float64
	}{
		{chart{"rps", "Requests per second against concurrency"}, "requests per second", func(s *bench.Summary) float64 { return s.RequestsPerSecond }},
		{chart{"p50", "Median (p50) latency against concurrency"}, "p50 latency (ms)", func(s *bench.Summary) float64 { return s.Total.Median }},
		{chart{"p99", "p99 latency against concurrency"}, "p99 latency (ms)", func(s *bench.Summary) float64 { return s.Total.P99 }},
	}
	var out []chart
	for _, c := range charts {
		p := plot.New()
		p.Title.Text = c.title
		p.X.Label.Text = "concurrency (ab -c)"
		p.Y.Label.Text = c.y
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = levelTicks(res.Levels)
		p.Legend.Top = true
		p.Legend.Left = true
		p.Add(plotter.NewGrid())
		i := 0
		for _, s := range res.Systems {
			if len(s.Runs) == 0 {
				continue
			}
			pts := make(plotter.XYs, len(s.Runs))
			for j, r := range s.Runs {
				pts[j].X, pts[j].Y = float64(r.Concurrency), c.value(r)
			}
			line, points, err := plotter.NewLinePoints(pts)
			if err != nil {
				return nil, err
			}
			col := palette[i%len(palette)]
			line.Color, points.Color = col, col
			line.Width = vg.Points(1.5)
			if i >= len(palette) {
				line.Dashes = []vg.Length{vg.Points(4), vg.Points(2)}
			}
			points.Shape = draw.CircleGlyph{}
			p.Add(line, points)
			p.Legend.Add(s.Name, line, points)
			i++
		}
		for _, ext := range []string{"png", "svg"} {
			if err := p.Save(9*vg.Inch, 5.5*vg.Inch, filepath.Join(dir, c.name+"."+ext)); err != nil {
				return nil, fmt.Errorf("chart %s: %v", c.name, err)
			}
		}
		out = append(out, c.chart)
	}
	return out, nil
}

// levelTicks marks the levels that ran, on a log axis.
func levelTicks(levels []int) plot.Ticker {
	var ticks plot.ConstantTicks
	for _, l := range levels {
		ticks = append(ticks, plot.Tick{Value: float64(l), Label: fmt.Sprint(l)})
	}
	return ticks
}
