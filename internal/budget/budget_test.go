package budget

import "testing"

func TestHoldTakesAndGivesBack(t *testing.T) {
	p := New(100, 10)
	var a, b int64
	if !p.Hold(&a, 10) || a != 0 || p.Left() != 100 {
		t.Fatalf("within the free allowance: held %d, left %d", a, p.Left())
	}
	if !p.Hold(&a, 70) || a != 60 || p.Left() != 40 {
		t.Fatalf("past it: held %d, left %d", a, p.Left())
	}
	if p.Hold(&b, 60) || b != 0 || p.Left() != 40 {
		t.Fatalf("more than is left: took it (held %d, left %d)", b, p.Left())
	}
	if !p.Hold(&b, 50) || p.Left() != 0 {
		t.Fatalf("all that is left: held %d, left %d", b, p.Left())
	}
	if !p.Hold(&a, 30) || a != 20 || p.Left() != 40 {
		t.Fatalf("shrunk: held %d, left %d", a, p.Left())
	}
	p.Resize(200)
	if p.Left() != 140 || !p.Hold(&b, 150) {
		t.Fatalf("resized to 200: left %d, held %d", p.Left(), b)
	}
	p.Release(&a)
	p.Release(&b)
	if a != 0 || b != 0 || p.Left() != 200 {
		t.Fatalf("released: %d %d, left %d", a, b, p.Left())
	}
}
