package dropreason

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
)

// A minimal reader of raw BTF (Documentation/bpf/btf.rst) that walks the
// type records and decodes enums only. The drop reason names need every
// enum of the kernel and nothing else; a full decoder builds every struct,
// function and pointer of vmlinux to get there.

const (
	btfMagic     = 0xeb9f
	btfKindEnum  = 6
	btfKindEnum6 = 19
)

type rawBTF struct {
	types   []byte
	strings []byte
	// base is vmlinux for a module's split BTF: string offsets below
	// len(base.strings) are base's.
	base *rawBTF
	bo   binary.ByteOrder
}

type rawEnumValue struct {
	name  string
	value uint64
}

func readRawBTF(path string, base *rawBTF) (*rawBTF, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseRawBTF(raw, path, base)
}

// parseRawBTF checks the header and cuts the type and string sections.
func parseRawBTF(raw []byte, path string, base *rawBTF) (*rawBTF, error) {
	if len(raw) < 24 {
		return nil, fmt.Errorf("%s: BTF too short", path)
	}
	var bo binary.ByteOrder = binary.LittleEndian
	if binary.LittleEndian.Uint16(raw) != btfMagic {
		bo = binary.BigEndian
		if bo.Uint16(raw) != btfMagic {
			return nil, fmt.Errorf("%s: not BTF", path)
		}
	}
	hdrLen := uint64(bo.Uint32(raw[4:]))
	typeOff, typeLen := uint64(bo.Uint32(raw[8:])), uint64(bo.Uint32(raw[12:]))
	strOff, strLen := uint64(bo.Uint32(raw[16:])), uint64(bo.Uint32(raw[20:]))
	if hdrLen+typeOff+typeLen > uint64(len(raw)) || hdrLen+strOff+strLen > uint64(len(raw)) {
		return nil, fmt.Errorf("%s: BTF sections out of bounds", path)
	}
	return &rawBTF{
		types:   raw[hdrLen+typeOff : hdrLen+typeOff+typeLen],
		strings: raw[hdrLen+strOff : hdrLen+strOff+strLen],
		base:    base, bo: bo,
	}, nil
}

func (b *rawBTF) str(off uint32) string {
	s := b.strings
	if b.base != nil {
		if int(off) < len(b.base.strings) {
			s = b.base.strings
		} else {
			off -= uint32(len(b.base.strings))
		}
	}
	if int(off) >= len(s) {
		return ""
	}
	s = s[off:]
	if i := bytes.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	return string(s)
}

var errBadBTF = errors.New("truncated BTF type record")

// enums calls f with the name and values of every enum (a signed 32-bit
// value is taken as its bit pattern) until f returns false.
func (b *rawBTF) enums(f func(name string, values []rawEnumValue) bool) error {
	t := b.types
	for len(t) > 0 {
		if len(t) < 12 {
			return errBadBTF
		}
		nameOff, info := b.bo.Uint32(t), b.bo.Uint32(t[4:])
		kind, vlen := (info>>24)&0x1f, int(info&0xffff)
		t = t[12:]
		var extra int
		switch kind {
		case 1, 14, 17: // int, var, decl_tag
			extra = 4
		case 3: // array
			extra = 12
		case 4, 5, 15, 19: // struct, union, datasec, enum64
			extra = 12 * vlen
		case 6, 13: // enum, func_proto
			extra = 8 * vlen
		case 2, 7, 8, 9, 10, 11, 12, 16, 18: // no trailing data
		default:
			return fmt.Errorf("unknown BTF kind %d", kind)
		}
		if len(t) < extra {
			return errBadBTF
		}
		if kind == btfKindEnum || kind == btfKindEnum6 {
			values := make([]rawEnumValue, vlen)
			for i := range values {
				if kind == btfKindEnum {
					r := t[8*i:]
					values[i] = rawEnumValue{b.str(b.bo.Uint32(r)), uint64(b.bo.Uint32(r[4:]))}
				} else {
					r := t[12*i:]
					values[i] = rawEnumValue{b.str(b.bo.Uint32(r)), uint64(b.bo.Uint32(r[8:]))<<32 | uint64(b.bo.Uint32(r[4:]))}
				}
			}
			if !f(b.str(nameOff), values) {
				return nil
			}
		}
		t = t[extra:]
	}
	return nil
}
