package hostdisk

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
)

// SignatureKind says what a signature means for the device.
type SignatureKind string

// Signature kinds. Only KindFilesystem can be mounted; every kind forbids
// formatting.
const (
	KindFilesystem     SignatureKind = "filesystem"
	KindPartitionTable SignatureKind = "partition-table"
	KindCrypto         SignatureKind = "crypto"
	KindRAID           SignatureKind = "raid" // LVM2 PV, md RAID member
	KindSwap           SignatureKind = "swap"
	KindOther          SignatureKind = "other"
)

// Signature is one thing found on a device.
type Signature struct {
	Kind SignatureKind
	// Type is blkid's TYPE or PTTYPE ("ext4", "xfs", "dos", "gpt",
	// "crypto_LUKS", "LVM2_member", "swap", "linux_raid_member"), or the
	// magic-byte probe's name (which says "ext" for the ext2/3/4 family).
	Type string
	// Source is "blkid" or "magic".
	Source string
	// Offset is the byte offset of the magic (magic probe only; -1 otherwise).
	Offset int64
}

func (s Signature) String() string {
	if s.Offset >= 0 {
		return fmt.Sprintf("%s %s (%s at %d)", s.Kind, s.Type, s.Source, s.Offset)
	}
	return fmt.Sprintf("%s %s (%s)", s.Kind, s.Type, s.Source)
}

// blkid -p exit codes (blkid(8)).
const (
	blkidFound      = 0
	blkidNothing    = 2
	blkidAmbivalent = 8
)

// BlkidArgs is the argument list of the low-level probe of dev: superblocks
// and partition tables, no cache.
func BlkidArgs(dev string) []string { return []string{"-p", "-o", "export", dev} }

// ParseBlkid turns the output and exit code of `blkid -p -o export <dev>`
// into signatures. Exit code 2 means nothing was found; 8 (ambivalent: more
// than one signature) is reported as a signature of its own; any other
// non-zero code is an error of class ErrProbeFailed. A successful run that
// names nothing recognisable still yields a KindOther signature: when in
// doubt, the device is not blank.
func ParseBlkid(stdout []byte, exitCode int) ([]Signature, error) {
	switch exitCode {
	case blkidNothing:
		return nil, nil
	case blkidAmbivalent:
		return []Signature{{Kind: KindOther, Type: "ambivalent (blkid exit 8)", Source: "blkid", Offset: -1}}, nil
	case blkidFound:
	default:
		return nil, &Error{Class: ErrProbeFailed, Op: "blkid", Err: fmt.Errorf("exit code %d", exitCode),
			Detail: trimDetail(stdout)}
	}
	kv := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(stdout))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if ok {
			kv[k] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, &Error{Class: ErrProbeFailed, Op: "blkid", Err: err}
	}
	var sigs []Signature
	if pt := kv["PTTYPE"]; pt != "" {
		sigs = append(sigs, Signature{Kind: KindPartitionTable, Type: pt, Source: "blkid", Offset: -1})
	}
	if t := kv["TYPE"]; t != "" {
		sigs = append(sigs, Signature{Kind: blkidKind(t, kv["USAGE"]), Type: t, Source: "blkid", Offset: -1})
	}
	if len(sigs) == 0 {
		sigs = append(sigs, Signature{Kind: KindOther, Type: "unrecognised blkid output", Source: "blkid", Offset: -1})
	}
	return sigs, nil
}

func blkidKind(typ, usage string) SignatureKind {
	switch {
	case typ == "swap":
		return KindSwap
	case usage == "filesystem":
		return KindFilesystem
	case usage == "crypto":
		return KindCrypto
	case usage == "raid":
		return KindRAID
	}
	return KindOther
}

// Magic numbers read by ProbeMagic, as a second opinion next to blkid.
const (
	magicXFS   = "XFSB"
	magicLUKS  = "LUKS\xba\xbe"
	magicGPT   = "EFI PART"
	magicLVM   = "LABELONE"
	magicLVM2  = "LVM2 001"
	magicBtrfs = "_BHRfS_M"
	magicISO   = "CD001"
)

const mdMagic = 0xa92b4efc

// ProbeMagic reads known offsets of a device of size bytes and reports the
// signatures whose magic numbers it finds: ext2/3/4 (0xEF53 at 1080), XFS
// ("XFSB" at 0), btrfs, ISO 9660, LUKS ("LUKS\xba\xbe" at 0), swap
// ("SWAPSPACE2"/"SWAP-SPACE" at page size - 10 for 4, 8, 16 and 64 KiB
// pages), MBR (0x55AA at 510: "dos" with a partition entry, "boot-sector"
// without), GPT ("EFI PART" at 512 or 4096), LVM2 ("LABELONE" in sectors 0-3)
// and md RAID superblocks (v0.90, v1.0 at the end; v1.1 at 0; v1.2 at 4096).
// It never writes.
func ProbeMagic(r io.ReaderAt, size int64) ([]Signature, error) {
	var sigs []Signature
	var readErr error
	at := func(off int64, n int) []byte {
		if off < 0 || off+int64(n) > size {
			return nil
		}
		b := make([]byte, n)
		if _, err := r.ReadAt(b, off); err != nil && readErr == nil {
			readErr = fmt.Errorf("read %d bytes at %d: %w", n, off, err)
			return nil
		}
		return b
	}
	add := func(k SignatureKind, t string, off int64) {
		sigs = append(sigs, Signature{Kind: k, Type: t, Source: "magic", Offset: off})
	}

	if b := at(1080, 2); b != nil && b[0] == 0x53 && b[1] == 0xef {
		add(KindFilesystem, "ext", 1080)
	}
	if b := at(0, 4); string(b) == magicXFS {
		add(KindFilesystem, "xfs", 0)
	}
	if b := at(65536+64, 8); string(b) == magicBtrfs {
		add(KindFilesystem, "btrfs", 65536+64)
	}
	if b := at(32769, 5); string(b) == magicISO {
		add(KindFilesystem, "iso9660", 32769)
	}
	if b := at(0, 6); string(b) == magicLUKS {
		add(KindCrypto, "crypto_LUKS", 0)
	}
	for _, ps := range []int64{4096, 8192, 16384, 65536} {
		if b := at(ps-10, 10); b != nil && (string(b) == "SWAPSPACE2" || string(b) == "SWAP-SPACE") {
			add(KindSwap, "swap", ps-10)
			break
		}
	}
	if b := at(0, 512); b != nil && b[510] == 0x55 && b[511] == 0xaa {
		entry := false
		for i := 0; i < 4; i++ {
			if b[446+16*i+4] != 0 { // partition type byte
				entry = true
			}
		}
		if entry {
			add(KindPartitionTable, "dos", 510)
		} else {
			add(KindOther, "boot-sector", 510)
		}
	}
	for _, off := range []int64{512, 4096} {
		if b := at(off, 8); string(b) == magicGPT {
			add(KindPartitionTable, "gpt", off)
			break
		}
	}
	for sector := int64(0); sector < 4; sector++ {
		off := sector * 512
		if b := at(off, 32); b != nil && string(b[:8]) == magicLVM {
			if string(b[24:32]) == magicLVM2 {
				add(KindRAID, "LVM2_member", off)
			} else {
				add(KindOther, "LABELONE label", off)
			}
			break
		}
	}
	mdOffsets := []int64{0, 4096}
	if size >= 128*1024 {
		mdOffsets = append(mdOffsets,
			((size>>9)-16)&^7<<9,    // v1.0: 8 KiB from the end, 4 KiB aligned
			(size&^(65536-1))-65536, // v0.90: last 64 KiB-aligned 64 KiB block
		)
	}
	for _, off := range mdOffsets {
		if b := at(off, 4); b != nil && binary.LittleEndian.Uint32(b) == mdMagic {
			add(KindRAID, "linux_raid_member", off)
			break
		}
	}
	if readErr != nil {
		return sigs, &Error{Class: ErrProbeFailed, Op: "read magic numbers", Err: readErr}
	}
	return sigs, nil
}
