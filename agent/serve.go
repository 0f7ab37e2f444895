package agent

import (
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"

	"github.com/prometheus/exporter-toolkit/web"
	"go.yaml.in/yaml/v2"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"
)

// probePaths answer without credentials: the kubelet's probes cannot send
// any, and they say nothing a stranger could use.
var probePaths = map[string]bool{"/healthz": true, "/readyz": true}

// serve serves on every listener with the --web.config.file format of
// exporter-toolkit (TLS, basic_auth_users, http_server_config, rate_limit),
// as web.ServeMultiple does, with one difference: the toolkit checks
// credentials on every path, which makes the kubelet's probes fail with
// 401 as soon as basic auth is on, and its rate limit makes them fail with
// 429 under a flood. Here the probe paths are exempt from both and
// every other path (/metrics, /, anything added later) is not. The file
// is read again on every request and TLS handshake, as the toolkit does,
// so a rotated certificate or password applies without a restart.
func serve(listeners []net.Listener, server *http.Server, configPath string, logger *slog.Logger) error {
	if configPath == "" {
		return serveEach(listeners, server.Serve)
	}
	c, err := loadWebConfig(configPath)
	if err != nil {
		return err
	}
	g := &guard{path: configPath, next: server.Handler, logger: logger, cache: map[[32]byte]bool{}}
	if c.RateLimiterConfig.Interval != 0 {
		g.limiter = rate.NewLimiter(rate.Every(c.RateLimiterConfig.Interval), c.RateLimiterConfig.Burst)
	}
	server.Handler = g
	tlsConfig, err := web.ConfigToTLSConfig(&c.TLSConfig)
	if err != nil {
		if !c.TLSConfig.IsEnabled() {
			logger.Info("TLS is disabled", "basic_auth", len(c.Users) > 0)
			return serveEach(listeners, server.Serve)
		}
		return fmt.Errorf("web config file %s: %w", configPath, err)
	}
	http2 := c.HTTPConfig.HTTP2
	if !http2 {
		server.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
	}
	nextProtos := []string{"http/1.1"}
	if http2 {
		nextProtos = []string{"h2", "http/1.1"}
	}
	tlsConfig.NextProtos = nextProtos
	tlsConfig.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c, err := loadWebConfig(configPath)
		if err != nil {
			return nil, err
		}
		cfg, err := web.ConfigToTLSConfig(&c.TLSConfig)
		if err != nil {
			return nil, err
		}
		cfg.NextProtos = nextProtos
		return cfg, nil
	}
	server.TLSConfig = tlsConfig
	logger.Info("TLS is enabled", "http2", http2, "min_version", tls.VersionName(tlsConfig.MinVersion), "basic_auth", len(c.Users) > 0)
	return serveEach(listeners, func(l net.Listener) error { return server.ServeTLS(l, "", "") })
}

func serveEach(listeners []net.Listener, fn func(net.Listener) error) error {
	var g errgroup.Group
	for _, l := range listeners {
		g.Go(func() error { return fn(l) })
	}
	return g.Wait()
}

// loadWebConfig reads the file as exporter-toolkit does: its defaults (TLS
// 1.2 to 1.3, HTTP/2 on), strict keys, paths relative to the file.
func loadWebConfig(path string) (*web.Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c := &web.Config{
		TLSConfig:  web.TLSConfig{MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS13},
		HTTPConfig: web.HTTPConfig{HTTP2: true},
	}
	if err := yaml.UnmarshalStrict(b, c); err != nil {
		return nil, fmt.Errorf("web config file %s: %w", path, err)
	}
	c.TLSConfig.SetDirectory(filepath.Dir(path))
	return c, nil
}

// guard is exporter-toolkit's web handler (rate limit, extra headers,
// basic auth) with the probe paths exempt from all of it.
type guard struct {
	path    string
	next    http.Handler
	logger  *slog.Logger
	limiter *rate.Limiter

	// bcrypt is slow on purpose; a verdict is cached by a hash of the
	// user, the stored hash and the password given, and one bcrypt runs
	// at a time, so a flood of wrong passwords costs one CPU at most.
	bcryptMu sync.Mutex
	mu       sync.Mutex
	cache    map[[32]byte]bool
}

// maxAuthCache bounds the verdict cache: wrong passwords are unbounded in
// number, so it is emptied when full rather than allowed to grow.
const maxAuthCache = 1024

// fakeHash stands in for an unknown user's hash, so that asking for one
// takes as long as a wrong password: no user enumeration by timing. It is
// the bcrypt of "fakepassword", as in exporter-toolkit.
const fakeHash = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi"

func (g *guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if probePaths[r.URL.Path] {
		// Before the rate limit, the file and bcrypt: a flood of
		// strangers at /metrics, or a config file being rewritten,
		// must not make the kubelet restart a working agent.
		g.next.ServeHTTP(w, r)
		return
	}
	c, err := loadWebConfig(g.path)
	if err != nil {
		g.logger.Error("unable to read the web config file", "err", err)
		http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
		return
	}
	if g.limiter != nil && !g.limiter.Allow() {
		http.Error(w, http.StatusText(http.StatusTooManyRequests), http.StatusTooManyRequests)
		return
	}
	for k, v := range c.HTTPConfig.Header {
		w.Header().Set(k, v)
	}
	if len(c.Users) == 0 || g.authorized(c, r) {
		g.next.ServeHTTP(w, r)
		return
	}
	w.Header().Set("WWW-Authenticate", "Basic")
	http.Error(w, http.StatusText(http.StatusUnauthorized), http.StatusUnauthorized)
}

func (g *guard) authorized(c *web.Config, r *http.Request) bool {
	user, pass, ok := r.BasicAuth()
	if !ok {
		return false
	}
	hash, known := c.Users[user]
	if !known {
		hash = fakeHash
	}
	key := sha256.Sum256([]byte(fmt.Sprintf("%q:%q:%q", user, string(hash), pass)))
	g.mu.Lock()
	verdict, cached := g.cache[key]
	g.mu.Unlock()
	if !cached {
		g.bcryptMu.Lock()
		err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(pass))
		g.bcryptMu.Unlock()
		verdict = known && err == nil
		g.mu.Lock()
		if len(g.cache) >= maxAuthCache {
			clear(g.cache)
		}
		g.cache[key] = verdict
		g.mu.Unlock()
	}
	return verdict && known
}
