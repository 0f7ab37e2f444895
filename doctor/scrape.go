package doctor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"time"
)

// Scraper fetches one snapshot of netsonde's metrics.
type Scraper func(ctx context.Context) (Snapshot, error)

// HTTPScraper scrapes a /metrics URL. Errors are one line naming what went
// wrong (the address did not answer, answered HTML, answered another
// exporter's metrics), because doctor prints them as its reason to give up.
func HTTPScraper(client *http.Client, rawURL string) (Scraper, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%q is not an http(s) URL", rawURL)
	}
	return func(ctx context.Context) (Snapshot, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", rawURL, err)
		}
		// The classic text format: every Prometheus exporter speaks it,
		// and it is what Parse reads.
		req.Header.Set("Accept", "text/plain;version=0.0.4;q=1,*/*;q=0.1")
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("%s does not answer: %w", rawURL, rootCause(err))
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("%s answers HTTP %s", rawURL, resp.Status)
		}
		if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "text/html" {
			return nil, fmt.Errorf("%s answers HTML, not metrics (is this the /metrics path?)", rawURL)
		}
		s, err := Parse(resp.Body)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", rawURL, err)
		}
		return s, nil
	}, nil
}

// rootCause strips url.Error's repetition of method and URL, which the
// message already names.
func rootCause(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) && ue.Err != nil {
		return ue.Err
	}
	return err
}

// Observe takes two scrapes d apart and returns them with the time
// between them. It logs at info level once the first scrape is in: from
// then on whatever happens is counted.
func Observe(ctx context.Context, scrape Scraper, d time.Duration, logger *slog.Logger) (Observation, error) {
	t0 := time.Now()
	before, err := scrape(ctx)
	if err != nil {
		return Observation{}, err
	}
	// Logged so that a person (at --log.level=info) and the scenario tests
	// know when the observed window opens.
	logger.Info("first scrape taken; observing", "duration", d)
	select {
	case <-ctx.Done():
		return Observation{}, fmt.Errorf("interrupted: %w", ctx.Err())
	case <-time.After(d - time.Since(t0)):
	}
	t1 := time.Now()
	after, err := scrape(ctx)
	if err != nil {
		return Observation{}, err
	}
	logger.Info("second scrape taken")
	// Both scrapes are timed from when they were asked for, so a slow first
	// scrape does not shrink the window the rates are computed over.
	return Observation{Before: before, After: after, Elapsed: t1.Sub(t0).Seconds()}, nil
}
