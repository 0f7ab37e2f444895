package agent

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/exporter-toolkit/web"
)

// The --web.config.file the agent validates before it listens: whatever a
// user writes there, validation returns an error or nil and never panics,
// so a bad file stops the agent with a message, as Run promises.
func FuzzWebConfig(f *testing.F) {
	f.Add("basic_auth_users:\n  admin: $2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi\n")
	f.Add("tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  min_version: TLS12\n")
	f.Add("http_server_config:\n  http2: false\n")
	f.Add("tls_server_config: [\n")
	f.Fuzz(func(t *testing.T, config string) {
		path := filepath.Join(t.TempDir(), "web.yml")
		if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
			t.Fatal(err)
		}
		_ = web.Validate(path)
	})
}

func TestWebConfigRejectsBadFiles(t *testing.T) {
	for name, config := range map[string]string{
		"yaml":     "tls_server_config: [\n",
		"unknown":  "no_such_key: 1\n",
		"tls half": "tls_server_config:\n  cert_file: a.crt\n",
		"bad hash": "basic_auth_users:\n  admin: notahash\n",
	} {
		path := filepath.Join(t.TempDir(), "web.yml")
		if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := web.Validate(path); err == nil {
			t.Errorf("%s: accepted %q", name, config)
		}
	}
}
