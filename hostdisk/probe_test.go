package hostdisk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// The fixtures are `blkid -p -o export` of loop devices on this kind of
// machine (util-linux 2.38.1), made with mkfs.ext4, mkfs.xfs, sfdisk,
// mkswap, cryptsetup luksFormat, and an LVM2 PV label and an md 1.2
// superblock written byte by byte (lvmLabel, mdSuperblock12).
func TestParseBlkidFixtures(t *testing.T) {
	sig := func(k SignatureKind, typ string) Signature {
		return Signature{Kind: k, Type: typ, Source: "blkid", Offset: -1}
	}
	tests := []struct {
		file string
		exit int
		want []Signature
	}{
		{"blank.txt", 2, nil},
		{"ext4.txt", 0, []Signature{sig(KindFilesystem, "ext4")}},
		{"xfs.txt", 0, []Signature{sig(KindFilesystem, "xfs")}},
		{"dos.txt", 0, []Signature{sig(KindPartitionTable, "dos")}},
		{"gpt.txt", 0, []Signature{sig(KindPartitionTable, "gpt")}},
		{"swap.txt", 0, []Signature{sig(KindSwap, "swap")}},
		{"luks.txt", 0, []Signature{sig(KindCrypto, "crypto_LUKS")}},
		{"lvm.txt", 0, []Signature{sig(KindRAID, "LVM2_member")}},
		{"md.txt", 0, []Signature{sig(KindRAID, "linux_raid_member")}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			out, err := os.ReadFile(filepath.Join("testdata", "blkid", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseBlkid(out, tt.exit)
			if err != nil {
				t.Fatalf("ParseBlkid: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseBlkid(%s) = %v, want %v", tt.file, got, tt.want)
			}
		})
	}
}

func TestParseBlkidEdgeCases(t *testing.T) {
	tests := []struct {
		name      string
		out       string
		exit      int
		wantKinds []SignatureKind
		wantErr   error
	}{
		{"nothing found", "", 2, nil, nil},
		{"ambivalent is a signature", "", 8, []SignatureKind{KindOther}, nil},
		{"usage error fails the probe", "", 4, nil, ErrProbeFailed},
		{"unknown exit code fails the probe", "", 1, nil, ErrProbeFailed},
		{"found but unrecognised output is still a signature", "DEVNAME=/dev/vdb\n", 0, []SignatureKind{KindOther}, nil},
		{"partition table and filesystem both count", "PTTYPE=dos\nTYPE=vfat\nUSAGE=filesystem\n", 0,
			[]SignatureKind{KindPartitionTable, KindFilesystem}, nil},
		{"md member", "TYPE=linux_raid_member\nUSAGE=raid\n", 0, []SignatureKind{KindRAID}, nil},
		{"type without usage", "TYPE=weird\n", 0, []SignatureKind{KindOther}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseBlkid([]byte(tt.out), tt.exit)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			var kinds []SignatureKind
			for _, s := range got {
				kinds = append(kinds, s.Kind)
			}
			if !reflect.DeepEqual(kinds, tt.wantKinds) {
				t.Errorf("kinds = %v, want %v", kinds, tt.wantKinds)
			}
		})
	}
}

// image is an in-memory device of size bytes with magic numbers written in.
type image []byte

func newImage(size int) image                { return make(image, size) }
func (im image) put(off int, b []byte) image { copy(im[off:], b); return im }
func (im image) putU32(off int, v uint32) image {
	binary.LittleEndian.PutUint32(im[off:], v)
	return im
}
func (im image) probe(t *testing.T) []Signature {
	return mustProbeMagic(t, bytes.NewReader(im), int64(len(im)))
}

func mustProbeMagic(t *testing.T, r *bytes.Reader, size int64) []Signature {
	t.Helper()
	s, err := ProbeMagic(r, size)
	if err != nil {
		t.Fatalf("ProbeMagic: %v", err)
	}
	return s
}

// lvmLabel is an LVM2 physical volume label as pvcreate writes it into
// sector 1, with the label CRC (LVM's CRC-32 variant: initial 0xf597a6cf, no
// final inversion), so that blkid recognises it too.
func lvmLabel() []byte {
	sec := make([]byte, 512)
	copy(sec, "LABELONE")
	binary.LittleEndian.PutUint64(sec[8:], 1)
	binary.LittleEndian.PutUint32(sec[20:], 32)
	copy(sec[24:], "LVM2 001")
	copy(sec[32:], "Abcdefghijklmnopqrstuvwxyz012345")
	binary.LittleEndian.PutUint64(sec[64:], 64<<20)
	crc := ^crc32.Update(^uint32(0xf597a6cf), crc32.IEEETable, sec[20:])
	binary.LittleEndian.PutUint32(sec[16:], crc)
	return sec
}

func TestProbeMagic(t *testing.T) {
	const size = 1 << 20
	mbrWithEntry := func() image {
		im := newImage(size).put(510, []byte{0x55, 0xaa})
		im[446+4] = 0x83 // Linux partition in entry 1
		return im
	}
	tests := []struct {
		name string
		img  image
		want []string // Kind/Type pairs
	}{
		{"blank", newImage(size), nil},
		{"text, no magic", newImage(size).put(0, []byte("hello world, not a filesystem")), nil},
		{"ext4", newImage(size).put(1080, []byte{0x53, 0xef}), []string{"filesystem/ext"}},
		{"xfs", newImage(size).put(0, []byte("XFSB")), []string{"filesystem/xfs"}},
		{"btrfs", newImage(size).put(65536+64, []byte("_BHRfS_M")), []string{"filesystem/btrfs"}},
		{"luks", newImage(size).put(0, []byte("LUKS\xba\xbe")), []string{"crypto/crypto_LUKS"}},
		{"swap 4k", newImage(size).put(4096-10, []byte("SWAPSPACE2")), []string{"swap/swap"}},
		{"old swap 64k", newImage(size).put(65536-10, []byte("SWAP-SPACE")), []string{"swap/swap"}},
		{"mbr with a partition", mbrWithEntry(), []string{"partition-table/dos"}},
		{"boot sector without partitions", newImage(size).put(510, []byte{0x55, 0xaa}), []string{"other/boot-sector"}},
		{"gpt (protective mbr + header)", mbrWithEntry().put(512, []byte("EFI PART")), []string{"partition-table/dos", "partition-table/gpt"}},
		{"gpt on 4k sectors", newImage(size).put(4096, []byte("EFI PART")), []string{"partition-table/gpt"}},
		{"lvm2 pv label in sector 1", newImage(size).put(512, lvmLabel()), []string{"raid/LVM2_member"}},
		{"lvm2 pv label in sector 3", newImage(size).put(1536, lvmLabel()), []string{"raid/LVM2_member"}},
		{"LABELONE of another kind", newImage(size).put(0, []byte("LABELONE")), []string{"other/LABELONE label"}},
		{"md 1.2", newImage(size).putU32(4096, 0xa92b4efc), []string{"raid/linux_raid_member"}},
		{"md 1.2 full superblock", newImage(size).put(4096, mdSuperblock12()), []string{"raid/linux_raid_member"}},
		{"md 1.1", newImage(size).putU32(0, 0xa92b4efc), []string{"raid/linux_raid_member"}},
		{"md 1.0 at the end", newImage(size).putU32(size-8192, 0xa92b4efc), []string{"raid/linux_raid_member"}},
		{"md 0.90 at the end", newImage(size).putU32(size-65536, 0xa92b4efc), []string{"raid/linux_raid_member"}},
		{"tiny device", newImage(100), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, s := range tt.img.probe(t) {
				if s.Source != "magic" || s.Offset < 0 {
					t.Errorf("signature %v: want source magic with an offset", s)
				}
				got = append(got, string(s.Kind)+"/"+s.Type)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ProbeMagic = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPlanFormat(t *testing.T) {
	fs := func(typ, src string) Signature {
		return Signature{Kind: KindFilesystem, Type: typ, Source: src, Offset: -1}
	}
	other := func(k SignatureKind, typ string) Signature {
		return Signature{Kind: k, Type: typ, Source: "blkid", Offset: -1}
	}
	tests := []struct {
		name    string
		probe   Probe
		want    string
		plan    FormatPlan
		wantErr error
	}{
		{"blank, default", Probe{}, "", FormatPlan{Format: true, FSType: "ext4"}, nil},
		{"blank, xfs", Probe{}, "xfs", FormatPlan{Format: true, FSType: "xfs"}, nil},
		{"blank but read-only", Probe{ReadOnly: true}, "ext4", FormatPlan{}, ErrReadOnlyDevice},
		{"unsupported fstype", Probe{}, "btrfs", FormatPlan{}, ErrInvalidArgument},
		{"ext4 found, ext4 wanted", Probe{Signatures: []Signature{fs("ext4", "blkid"), fs("ext", "magic")}}, "ext4", FormatPlan{FSType: "ext4"}, nil},
		{"ext3 found, anything", Probe{Signatures: []Signature{fs("ext3", "blkid")}}, "", FormatPlan{FSType: "ext4"}, nil},
		{"xfs found, nothing asked", Probe{Signatures: []Signature{fs("xfs", "blkid"), fs("xfs", "magic")}}, "", FormatPlan{FSType: "xfs"}, nil},
		{"only magic sees ext", Probe{Signatures: []Signature{fs("ext", "magic")}}, "ext4", FormatPlan{FSType: "ext4"}, nil},
		{"ext4 found, xfs wanted", Probe{Signatures: []Signature{fs("ext4", "blkid")}}, "xfs", FormatPlan{}, ErrFilesystemMismatch},
		{"btrfs found", Probe{Signatures: []Signature{fs("btrfs", "blkid")}}, "", FormatPlan{}, ErrFilesystemMismatch},
		{"probes disagree", Probe{Signatures: []Signature{fs("xfs", "blkid"), fs("ext", "magic")}}, "", FormatPlan{}, ErrHasSignature},
		{"partition table", Probe{Signatures: []Signature{other(KindPartitionTable, "dos")}}, "ext4", FormatPlan{}, ErrHasSignature},
		{"gpt", Probe{Signatures: []Signature{other(KindPartitionTable, "gpt")}}, "", FormatPlan{}, ErrHasSignature},
		{"luks", Probe{Signatures: []Signature{other(KindCrypto, "crypto_LUKS")}}, "ext4", FormatPlan{}, ErrHasSignature},
		{"lvm", Probe{Signatures: []Signature{other(KindRAID, "LVM2_member")}}, "ext4", FormatPlan{}, ErrHasSignature},
		{"md", Probe{Signatures: []Signature{other(KindRAID, "linux_raid_member")}}, "xfs", FormatPlan{}, ErrHasSignature},
		{"swap", Probe{Signatures: []Signature{other(KindSwap, "swap")}}, "ext4", FormatPlan{}, ErrHasSignature},
		{"ambivalent", Probe{Signatures: []Signature{other(KindOther, "ambivalent")}}, "ext4", FormatPlan{}, ErrHasSignature},
		{"filesystem inside a partition table", Probe{Signatures: []Signature{other(KindPartitionTable, "dos"), fs("vfat", "blkid")}}, "", FormatPlan{}, ErrHasSignature},
		{"read-only with a filesystem mounts", Probe{ReadOnly: true, Signatures: []Signature{fs("xfs", "blkid")}}, "xfs", FormatPlan{FSType: "xfs"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.probe.Device = "/dev/vdb"
			plan, err := PlanFormat(tt.probe, tt.want)
			if tt.wantErr == nil && err != nil || !errors.Is(err, tt.wantErr) {
				t.Fatalf("PlanFormat err = %v, want %v", err, tt.wantErr)
			}
			if plan != tt.plan {
				t.Errorf("PlanFormat = %+v, want %+v", plan, tt.plan)
			}
			var se *SignatureError
			if errors.Is(err, ErrHasSignature) && (!errors.As(err, &se) || len(se.Signatures) == 0) {
				t.Errorf("ErrHasSignature without the signatures: %v", err)
			}
		})
	}
}

func TestMkfsCommandNeverForces(t *testing.T) {
	for _, fstype := range AllowedFSTypes() {
		name, args, err := MkfsCommand(fstype, "/dev/vdb")
		if err != nil {
			t.Fatalf("MkfsCommand(%s): %v", fstype, err)
		}
		if name != "mkfs."+fstype || args[len(args)-1] != "/dev/vdb" {
			t.Errorf("MkfsCommand(%s) = %s %v", fstype, name, args)
		}
		for _, a := range args {
			if a == "-f" || a == "-F" || a == "--force" {
				t.Errorf("MkfsCommand(%s) passes %s", fstype, a)
			}
		}
	}
	if _, _, err := MkfsCommand("vfat", "/dev/vdb"); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("MkfsCommand(vfat) err = %v, want ErrInvalidArgument", err)
	}
}

// mdSuperblock12 is an md RAID 1.2 superblock (mdadm writes it 4 KiB into
// the member) with a valid checksum, so that blkid recognises it as
// linux_raid_member too. mdadm is not needed.
func mdSuperblock12() []byte {
	sb := make([]byte, 256+2) // one dev_roles entry
	le := binary.LittleEndian
	le.PutUint32(sb[0:], 0xa92b4efc) // magic
	le.PutUint32(sb[4:], 1)          // major_version
	for i := range 16 {
		sb[16+i] = byte(i + 1)   // set_uuid
		sb[168+i] = byte(i + 17) // device_uuid
	}
	copy(sb[32:], "cw:test0")         // set_name
	le.PutUint64(sb[64:], 1700000000) // ctime
	le.PutUint32(sb[72:], 1)          // level: raid1
	le.PutUint64(sb[80:], 100000)     // size
	le.PutUint32(sb[92:], 2)          // raid_disks
	le.PutUint64(sb[128:], 2048)      // data_offset
	le.PutUint64(sb[136:], 100000)    // data_size
	le.PutUint64(sb[144:], 4096/512)  // super_offset, in sectors
	le.PutUint64(sb[200:], 1)         // events
	le.PutUint32(sb[220:], 1)         // max_dev
	var sum uint64
	for i := 0; i < 256; i += 4 {
		sum += uint64(le.Uint32(sb[i:]))
	}
	sum += uint64(le.Uint16(sb[256:]))
	le.PutUint32(sb[216:], uint32((sum&0xffffffff)+(sum>>32))) // sb_csum
	return sb
}
