package mtucheck

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// cniMTU reads the MTU the node's CNI configuration declares. The kubelet
// (through the container runtime) uses the first file of the directory in
// lexical order with a .conf, .conflist or .json suffix, so that file is
// the one read. It returns 0 and no error when no config declares an MTU.
func cniMTU(dir string) (mtu int, file string, err error) {
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return 0, "", nil
	}
	if err != nil {
		return 0, "", fmt.Errorf("read CNI config dir: %w", err)
	}
	var names []string
	for _, e := range entries {
		switch filepath.Ext(e.Name()) {
		case ".conf", ".conflist", ".json":
			if !e.IsDir() {
				names = append(names, e.Name())
			}
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return 0, "", nil
	}
	file = filepath.Join(dir, names[0])
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, file, fmt.Errorf("read CNI config: %w", err)
	}
	var conf struct {
		MTU     int `json:"mtu"`
		Plugins []struct {
			MTU int `json:"mtu"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(b, &conf); err != nil {
		return 0, file, fmt.Errorf("parse CNI config %s: %w", file, err)
	}
	if conf.MTU > 0 || !strings.HasSuffix(file, ".conflist") {
		return conf.MTU, file, nil
	}
	for _, p := range conf.Plugins {
		if p.MTU > 0 {
			return p.MTU, file, nil
		}
	}
	return 0, file, nil
}
