package kube

import (
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The overlay address: the annotation wins, else the first address of the
// podCIDR (flannel's and kindnet's cni0 gateway), else none.
func TestOverlayIP(t *testing.T) {
	for _, c := range []struct {
		annotation, podCIDR, want string
	}{
		{"", "10.244.1.0/24", "10.244.1.1"},
		{"", "10.244.1.7/24", "10.244.1.1"}, // not canonical: masked first
		{"", "fd00:10:244:1::/64", "fd00:10:244:1::1"},
		{"100.64.3.9", "10.244.1.0/24", "100.64.3.9"},
		{"not-an-ip", "10.244.1.0/24", "10.244.1.1"},
		{"", "", ""},
	} {
		n := &corev1.Node{Spec: corev1.NodeSpec{PodCIDR: c.podCIDR}}
		if c.annotation != "" {
			n.ObjectMeta = metav1.ObjectMeta{Annotations: map[string]string{OverlayAnnotation: c.annotation}}
		}
		got := overlayIP(n)
		if c.want == "" {
			if got.IsValid() {
				t.Errorf("%+v: %v, want none", c, got)
			}
			continue
		}
		if got != netip.MustParseAddr(c.want) {
			t.Errorf("%+v: %v, want %s", c, got, c.want)
		}
	}
}
