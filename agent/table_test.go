package agent_test

import (
	"strings"
	"testing"

	"github.com/netsonde/netsonde/agent"
)

// Every collector states its metrics and its budget, so a new one is
// counted against its own budget, not the agent's.
func TestEveryCollectorHasABudget(t *testing.T) {
	for _, s := range agent.Collectors() {
		if len(s.Metrics) == 0 || s.Budget == nil {
			t.Errorf("collector %s: Spec.Metrics %q, Spec.Budget set %v; want both", s.Name, s.Metrics, s.Budget != nil)
			continue
		}
		for _, p := range s.Metrics {
			if !strings.HasPrefix(p, "netsonde_") {
				t.Errorf("collector %s: metric prefix %q outside netsonde_", s.Name, p)
			}
		}
		if b := s.Budget(1001, 110); b <= 0 {
			t.Errorf("collector %s: budget %d at 1,001 interfaces and 110 pods", s.Name, b)
		}
	}
}
