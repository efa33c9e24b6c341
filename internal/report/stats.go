package report

import (
	"fmt"
	"slices"
)

// Median is the middle of xs (the mean of the two middle values for an
// even count); 0 for none.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// RoundCost is, for each round, the median over every cell of the
// generator's CPU per request in that round's repetition divided by its
// median in the cell: the machine's slowness round by round (1 is the
// run's usual speed, 1.2 a round in which the same work took a fifth
// longer). The generator does the same work per request all run long, so
// it shows a host that slows the guest's CPUs without any steal showing.
func RoundCost(res *Results) []float64 {
	var byRound [][]float64
	for _, s := range res.Systems {
		for _, c := range s.Cells {
			if c.Median.ClientCPU <= 0 {
				continue
			}
			for _, r := range c.Repetitions {
				for len(byRound) <= r.Round {
					byRound = append(byRound, nil)
				}
				byRound[r.Round] = append(byRound[r.Round], r.ClientCPU/c.Median.ClientCPU)
			}
		}
	}
	cost := make([]float64, len(byRound))
	for i, xs := range byRound {
		cost[i] = Median(xs)
	}
	return cost
}

// figureFields lists the fields of Figures, so that each is summarized
// the same way.
var figureFields = []func(*Figures) *float64{
	func(f *Figures) *float64 { return &f.RequestsPerSecond },
	func(f *Figures) *float64 { return &f.TimePerRequest },
	func(f *Figures) *float64 { return &f.TimePerRequestAll },
	func(f *Figures) *float64 { return &f.P50 },
	func(f *Figures) *float64 { return &f.P99 },
	func(f *Figures) *float64 { return &f.ServerCPU },
	func(f *Figures) *float64 { return &f.ClientCPU },
	func(f *Figures) *float64 { return &f.ServerPerClientCPU },
}

// Spread is the median, the smallest and the largest of every figure over
// the repetitions.
func Spread(reps []Repetition) (median, low, high Figures) {
	for _, field := range figureFields {
		var xs []float64
		for i := range reps {
			xs = append(xs, *field(&reps[i].Figures))
		}
		if len(xs) == 0 {
			continue
		}
		*field(&median), *field(&low), *field(&high) = Median(xs), slices.Min(xs), slices.Max(xs)
	}
	return median, low, high
}

// Verdict compares two cells on one figure: "faster" or "slower" (a is
// against b; higher is better when higherBetter), only when their spreads
// do not overlap; otherwise "within noise".
func Verdict(a, b *Cell, field func(*Figures) *float64, higherBetter bool) string {
	aLo, aHi, bLo, bHi := *field(&a.Low), *field(&a.High), *field(&b.Low), *field(&b.High)
	better := "faster"
	worse := "slower"
	switch {
	case aLo > bHi:
		if higherBetter {
			return better
		}
		return worse
	case aHi < bLo:
		if higherBetter {
			return worse
		}
		return better
	}
	return "within noise"
}

// RelateToReference sets every cell's multiple of the reference system
// at the same level. The multiple is taken within each round: each of the
// system's repetitions over the mean of the reference's in that round,
// so that what the machine's speed did between rounds drops out, as it
// does for two runs side by side. The cell keeps the median of those
// multiples with their min–max, and calls the system faster or slower
// only when the whole spread lies on one side of 1 (every round agrees);
// otherwise within noise. A TLS system is related to the reference too:
// how much a handshake per request costs against the plain reference.
func (r *Results) RelateToReference() {
	ref := r.system(r.Reference)
	if ref == nil {
		return
	}
	for _, s := range r.Systems {
		if s == ref {
			continue
		}
		for _, c := range s.Cells {
			rc := ref.cell(c.Level)
			if rc == nil {
				continue
			}
			multiples := roundMultiples(c.Repetitions, rc.Repetitions)
			if len(multiples) == 0 {
				continue
			}
			c.PerReference, c.PerReferenceLow, c.PerReferenceHigh = Median(multiples), slices.Min(multiples), slices.Max(multiples)
			switch {
			case c.PerReferenceLow > 1:
				c.PerReferenceVerdict = "faster"
			case c.PerReferenceHigh < 1:
				c.PerReferenceVerdict = "slower"
			default:
				c.PerReferenceVerdict = "within noise"
			}
		}
	}
}

// roundMultiples divides each repetition's req/s by the mean of the
// reference's repetitions in the same round; a repetition whose round the
// reference did not run in has none.
func roundMultiples(reps, refReps []Repetition) []float64 {
	sum := map[int]float64{}
	n := map[int]int{}
	for _, rr := range refReps {
		sum[rr.Round] += rr.RequestsPerSecond
		n[rr.Round]++
	}
	var multiples []float64
	for _, rep := range reps {
		if n[rep.Round] > 0 && sum[rep.Round] > 0 {
			multiples = append(multiples, rep.RequestsPerSecond/(sum[rep.Round]/float64(n[rep.Round])))
		}
	}
	return multiples
}

// GeneratorDrift is how much the load generator's CPU per request moved
// from run a to run b: the median over the cells both have of b's median
// over a's, minus one (+0.18 for a run in which the same work took 18 %
// longer). The generator does the same work per request in both, so
// this is the machine's change of speed between them; ok is false when
// they share no cell.
func GeneratorDrift(a, b *Results) (drift float64, ok bool) {
	var ratios []float64
	for _, s := range b.Systems {
		old := a.system(s.Name)
		if old == nil {
			continue
		}
		for _, c := range s.Cells {
			if oc := old.cell(c.Level); oc != nil && oc.Median.ClientCPU > 0 && c.Median.ClientCPU > 0 {
				ratios = append(ratios, c.Median.ClientCPU/oc.Median.ClientCPU)
			}
		}
	}
	if len(ratios) == 0 {
		return 0, false
	}
	return Median(ratios) - 1, true
}

// rps is the req/s field, for Verdict.
func rps(f *Figures) *float64 { return &f.RequestsPerSecond }

// perClientCPU is the server ÷ client CPU field, for Verdict.
func perClientCPU(f *Figures) *float64 { return &f.ServerPerClientCPU }

// spreadText is a median with its spread, as the tables show it.
func spreadText(med, lo, hi float64, format string) string {
	return fmt.Sprintf(format+" ("+format+"–"+format+")", med, lo, hi)
}

// cell returns s's cell at level c, or nil.
func (s *System) cell(c int) *Cell {
	for _, x := range s.Cells {
		if x.Level == c {
			return x
		}
	}
	return nil
}
