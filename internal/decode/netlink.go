package decode

import (
	"encoding/binary"
	"fmt"
)

// nlaTypeMask strips NLA_F_NESTED (1<<15) and NLA_F_NET_BYTEORDER
// (1<<14) from an attribute's type.
const nlaTypeMask = 1<<14 - 1

// NetlinkAttrs calls fn with each netlink attribute of b (struct nlattr:
// length and type, then the value, padded to 4 bytes), in place: a dump
// of 1,000 interfaces every few seconds allocates nothing per attribute.
// Each length is checked before it is used (netlink's ParseRouteAttr
// panics on an attribute shorter than its header, found by netdev's
// FuzzParseLink). The header is in host byte order, as the kernel writes
// every netlink message to a socket of its own host; a value's order is
// the attribute's to say (NLA_F_NET_BYTEORDER, masked off the type here).
func NetlinkAttrs(b []byte, fn func(typ uint16, v []byte)) error {
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b))
		if l < 4 || l > len(b) {
			return fmt.Errorf("attribute of length %d in %d bytes", l, len(b))
		}
		fn(binary.NativeEndian.Uint16(b[2:])&nlaTypeMask, b[4:l])
		b = b[min((l+3)&^3, len(b)):]
	}
	return nil
}

// AppendNetlinkAttr appends one attribute, padded to 4 bytes, as the
// kernel writes it: the inverse of NetlinkAttrs, for fixtures.
func AppendNetlinkAttr(b []byte, typ uint16, v []byte) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(4+len(v)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, v...)
	return append(b, make([]byte, (4-len(v)%4)%4)...)
}
