package decode

import (
	"fmt"
	"strings"
)

// DNSName turns a wire-format name (length-prefixed labels ending in a
// 0) into dotted text, with bytes outside [A-Za-z0-9-_] escaped as \DDD
// and dots inside a label as \. (the zone-file forms): a label value must
// not carry raw control bytes. It reports false for anything not a
// complete, uncompressed name of at most 255 bytes.
func DNSName(wire []byte) (string, bool) {
	var b strings.Builder
	off := 0
	for off < len(wire) {
		l := int(wire[off])
		if l == 0 {
			if b.Len() == 0 {
				return ".", true
			}
			return b.String(), true
		}
		if l&0xc0 != 0 || off+1+l > len(wire) || off+1+l > 255 {
			return "", false
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		for _, c := range wire[off+1 : off+1+l] {
			switch {
			case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
				b.WriteByte(c)
			case c == '.' || c == '\\':
				b.WriteByte('\\')
				b.WriteByte(c)
			default:
				fmt.Fprintf(&b, "\\%03d", c)
			}
		}
		off += 1 + l
	}
	return "", false
}
