package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/chromedp/chromedp"
)

// Chromium returns the path of Debian's chromium, or "" when it is not
// installed; screenshots need it.
func Chromium() string {
	path, _ := exec.LookPath("chromium")
	return path
}

// shoot opens each page in headless Chromium and saves a full-page PNG of
// it into dir, as the seed's write-up had screenshots. wait is a CSS
// selector each page must show first.
func shoot(dir string, pages []page) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	profile, err := os.MkdirTemp("", "loadlab-chromium")
	if err != nil {
		return err
	}
	defer os.RemoveAll(profile)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(Chromium()), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.UserDataDir(profile),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true), chromedp.WindowSize(1280, 900))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel2 := chromedp.NewContext(actx)
	defer cancel2()
	ctx, cancel3 := context.WithTimeout(ctx, 60*time.Second)
	defer cancel3()
	for _, p := range pages {
		if err := chromedp.Do(ctx, chromedp.Navigate(p.url), chromedp.WaitVisible(p.wait)); err != nil {
			return fmt.Errorf("screenshot of %s: %v", p.url, err)
		}
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100 makes a PNG; below, a JPEG
		if err != nil {
			return fmt.Errorf("screenshot of %s: %v", p.url, err)
		}
		if err := os.WriteFile(filepath.Join(dir, p.name+".png"), png, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// page is one page to photograph.
type page struct{ name, url, wait string }
