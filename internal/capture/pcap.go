package capture

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// LinkTypeRaw is LINKTYPE_RAW: every record starts at the IP header (the
// version nibble says 4 or 6). A dropped packet is captured from its
// network header, so there is no link-layer header to record.
const LinkTypeRaw = 101

// PcapWriter writes the libpcap file format (microsecond timestamps).
type PcapWriter struct {
	w       *bufio.Writer
	snaplen uint32
}

// NewPcapWriter writes the file header.
func NewPcapWriter(w io.Writer, snaplen int) (*PcapWriter, error) {
	p := &PcapWriter{w: bufio.NewWriter(w), snaplen: uint32(max(snaplen, 1))}
	var h [24]byte
	binary.LittleEndian.PutUint32(h[0:], 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(h[4:], 2)
	binary.LittleEndian.PutUint16(h[6:], 4)
	binary.LittleEndian.PutUint32(h[16:], p.snaplen)
	binary.LittleEndian.PutUint32(h[20:], LinkTypeRaw)
	if _, err := p.w.Write(h[:]); err != nil {
		return nil, fmt.Errorf("write pcap header: %w", err)
	}
	return p, p.w.Flush()
}

// Write adds one packet and flushes it, so a reader (tcpdump -r -) sees it
// at once. Packets without an IP header are skipped: LINKTYPE_RAW has no
// room for them.
func (p *PcapWriter) Write(pkt *Packet) error {
	if len(pkt.Data) == 0 || (pkt.Data[0]>>4 != 4 && pkt.Data[0]>>4 != 6) {
		return nil
	}
	data := pkt.Data
	if uint32(len(data)) > p.snaplen {
		data = data[:p.snaplen]
	}
	var h [16]byte
	us := pkt.Time.UnixMicro()
	binary.LittleEndian.PutUint32(h[0:], uint32(us/1e6))
	binary.LittleEndian.PutUint32(h[4:], uint32(us%1e6))
	binary.LittleEndian.PutUint32(h[8:], uint32(len(data)))
	binary.LittleEndian.PutUint32(h[12:], uint32(max(pkt.Len, len(data))))
	if _, err := p.w.Write(h[:]); err != nil {
		return fmt.Errorf("write pcap record: %w", err)
	}
	if _, err := p.w.Write(data); err != nil {
		return fmt.Errorf("write pcap record: %w", err)
	}
	return p.w.Flush()
}
