package mtucheck

import (
	"errors"
	"fmt"
	"net"
	"os"

	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/netsonde/netsonde/internal/hostview"
)

// wgReader reads the endpoints of a WireGuard device's peers (nil: a peer
// without one), by the device's name.
type wgReader func(name string) ([]net.IP, error)

// wgClient reads WireGuard devices over generic netlink (WG_CMD_GET_DEVICE)
// in the agent's namespace. The client is made on first need, when a
// wireguard link exists (so its module is loaded: wgctrl looks the
// generic netlink family up once, when made), and made again after a
// device it could not find.
type wgClient struct {
	c *wgctrl.Client
}

func (w *wgClient) endpoints(name string) ([]net.IP, error) {
	if w.c == nil {
		c, err := wgctrl.New()
		if err != nil {
			return nil, fmt.Errorf("wireguard generic netlink: %w", err)
		}
		w.c = c
	}
	d, err := w.c.Device(name)
	if errors.Is(err, os.ErrNotExist) {
		// Gone since the link list was read, or the client predates the
		// module: the next read starts afresh.
		w.close()
	}
	if err != nil {
		return nil, fmt.Errorf("wireguard device %s: %w", name, err)
	}
	// The kernel sends the device's private key (and peers' preshared
	// keys) to any reader with CAP_NET_ADMIN; they are dropped here and
	// go no further than this function.
	d.PrivateKey = wgtypes.Key{}
	out := make([]net.IP, 0, len(d.Peers))
	for i := range d.Peers {
		d.Peers[i].PresharedKey = wgtypes.Key{}
		if ep := d.Peers[i].Endpoint; ep != nil {
			out = append(out, ep.IP)
		}
	}
	return out, nil
}

func (w *wgClient) close() {
	if w.c != nil {
		w.c.Close()
		w.c = nil
	}
}

// readWireGuard reads the peers' endpoints of every wireguard link, by
// link index. A device that cannot be read is left out (not judged), and
// its error returned by name for the caller to log.
func readWireGuard(links []hostview.Link, read wgReader) (map[int][]net.IP, map[string]error) {
	var eps map[int][]net.IP
	var errs map[string]error
	for _, l := range links {
		if l.Kind != "wireguard" {
			continue
		}
		ips, err := read(l.Name)
		if err != nil {
			if errs == nil {
				errs = map[string]error{}
			}
			errs[l.Name] = err
			continue
		}
		if eps == nil {
			eps = map[int][]net.IP{}
		}
		eps[l.Index] = ips
	}
	return eps, errs
}
