package hostdisk

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Filesystems this package creates and mounts.
const (
	FSExt4 = "ext4"
	FSXFS  = "xfs"
	// DefaultFSType is what a blank device gets when no fstype is asked for.
	DefaultFSType = FSExt4
)

// AllowedFSTypes is the allow-list of filesystems to create or mount.
func AllowedFSTypes() []string { return []string{FSExt4, FSXFS} }

// ValidateFSType accepts "" (use what is there, or DefaultFSType when blank)
// and the allowed filesystems.
func ValidateFSType(fstype string) error {
	if fstype == "" || slices.Contains(AllowedFSTypes(), fstype) {
		return nil
	}
	return fmt.Errorf("fstype %q: %w: allowed are %s", fstype, ErrInvalidArgument,
		strings.Join(AllowedFSTypes(), ", "))
}

// fsFamily maps what probes call a filesystem to the type it mounts as.
func fsFamily(t string) string {
	switch t {
	case "ext", "ext2", "ext3", "ext4", "ext4dev":
		return FSExt4
	}
	return t
}

// Probe is what is known about a device before formatting or mounting it.
type Probe struct {
	Device     string
	Size       int64
	ReadOnly   bool
	Signatures []Signature // blkid's, then the magic-number probe's
}

// Blank reports whether no signature at all was found.
func (p Probe) Blank() bool { return len(p.Signatures) == 0 }

// FormatPlan is what the format-safety rules decided for a device.
type FormatPlan struct {
	// Format is true only for a blank device: run mkfs with FSType.
	Format bool
	// FSType is the filesystem to create (Format) or the one found, which
	// the device is mounted as.
	FSType string
}

// PlanFormat holds the format-safety rules, in one place:
//
//  1. want must be "" or an allowed filesystem.
//  2. A device with no signature at all is formatted with want (or
//     DefaultFSType) — unless it is read-only, or is to be mounted
//     read-only (ErrReadOnlyDevice).
//  3. Any signature that is not a filesystem (partition table, LUKS, LVM2 PV,
//     md RAID, swap, an unrecognised or ambivalent blkid result, a boot
//     sector) means never format and never mount: ErrHasSignature.
//  4. Filesystem signatures that disagree with each other: ErrHasSignature.
//  5. A filesystem this package does not mount, or one other than want:
//     ErrFilesystemMismatch.
//  6. Otherwise the device is mounted as it is, never formatted.
//
// Nothing else formats: a mount failure later is an error, never a reason to
// come back here with different inputs.
func PlanFormat(p Probe, want string) (FormatPlan, error) {
	if err := ValidateFSType(want); err != nil {
		return FormatPlan{}, err
	}
	if p.Blank() {
		if p.ReadOnly {
			return FormatPlan{}, &Error{Class: ErrReadOnlyDevice, Op: "format", Device: p.Device,
				Detail: "blank but read-only; refusing to format"}
		}
		if want == "" {
			want = DefaultFSType
		}
		return FormatPlan{Format: true, FSType: want}, nil
	}
	var other []Signature
	families := map[string]bool{}
	for _, s := range p.Signatures {
		if s.Kind != KindFilesystem {
			other = append(other, s)
			continue
		}
		families[fsFamily(s.Type)] = true
	}
	if len(other) > 0 {
		return FormatPlan{}, &SignatureError{Device: p.Device, Signatures: p.Signatures,
			Reason: "not a filesystem this plugin may format or mount"}
	}
	if len(families) > 1 {
		return FormatPlan{}, &SignatureError{Device: p.Device, Signatures: p.Signatures,
			Reason: "probes disagree about the filesystem"}
	}
	var found string
	for f := range families {
		found = f
	}
	if !slices.Contains(AllowedFSTypes(), found) {
		return FormatPlan{}, &Error{Class: ErrFilesystemMismatch, Op: "mount", Device: p.Device,
			Detail: fmt.Sprintf("device holds %s; only %s are mounted", found, strings.Join(AllowedFSTypes(), ", "))}
	}
	if want != "" && found != want {
		return FormatPlan{}, &Error{Class: ErrFilesystemMismatch, Op: "mount", Device: p.Device,
			Detail: fmt.Sprintf("device holds %s, %s was asked for; not reformatting", found, want)}
	}
	return FormatPlan{FSType: found}, nil
}

// MkfsCommand is the program and argument list that formats dev with fstype.
// Neither mkfs gets a force flag: the blank check has been done, and
// mkfs.xfs without -f refuses a device with a signature on its own. ext4:
// no discard (the device is blank; discarding a large thin volume is slow),
// lazy inode table init (safe: uninitialised groups are flagged), journal
// zeroed (a non-zeroed device must not be able to confuse a journal replay).
func MkfsCommand(fstype, dev string) (string, []string, error) {
	switch fstype {
	case FSExt4:
		return "mkfs.ext4", []string{"-q", "-E", "nodiscard,lazy_itable_init=1,lazy_journal_init=0", dev}, nil
	case FSXFS:
		return "mkfs.xfs", []string{"-q", "-K", dev}, nil
	}
	return "", nil, ValidateFSType(fstype)
}

// ProbeDevice runs both probes on dev: `blkid -p` through the Runner and the
// magic-number reader. Either failing is an error of class ErrProbeFailed,
// and nothing must be formatted then.
func (h *Host) ProbeDevice(ctx context.Context, dev string) (Probe, error) {
	if !filepath.IsAbs(dev) {
		return Probe{}, &Error{Class: ErrInvalidArgument, Op: "probe", Device: dev, Detail: "device path must be absolute"}
	}
	p := Probe{Device: dev}
	res, err := h.run.Run(ctx, "blkid", BlkidArgs(dev)...)
	if err != nil {
		return p, &Error{Class: ErrProbeFailed, Op: "blkid", Device: dev, Err: err}
	}
	sigs, err := ParseBlkid(res.Stdout, res.ExitCode)
	if err != nil {
		return p, &Error{Class: ErrProbeFailed, Op: "blkid", Device: dev, Err: err, Detail: trimDetail(res.Stderr)}
	}
	p.Signatures = append(p.Signatures, sigs...)

	f, err := os.Open(dev)
	if err != nil {
		return p, &Error{Class: ErrProbeFailed, Op: "open", Device: dev, Err: err}
	}
	defer f.Close()
	p.Size, p.ReadOnly, err = deviceSizeRO(f)
	if err != nil {
		return p, &Error{Class: ErrProbeFailed, Op: "size", Device: dev, Err: err}
	}
	magic, err := ProbeMagic(f, p.Size)
	if err != nil {
		return p, &Error{Class: ErrProbeFailed, Op: "read magic numbers", Device: dev, Err: err}
	}
	p.Signatures = append(p.Signatures, magic...)
	return p, nil
}

// FormatResult says what FormatIfBlank did.
type FormatResult struct {
	Formatted bool   // mkfs ran (the device was blank)
	FSType    string // the filesystem now on the device
	Probe     Probe  // what was found before anything was done
}

// FormatIfBlank formats dev with fstype ("" = DefaultFSType) only when both
// probes find no signature at all (PlanFormat). A device that already holds
// an allowed filesystem matching fstype is left alone (Formatted false). Any
// other signature is a *SignatureError (ErrHasSignature); a mismatching
// filesystem ErrFilesystemMismatch; a blank device someone holds
// exclusively (a mount, device-mapper, md, swap) ErrDeviceInUse. After mkfs,
// blkid must report the new filesystem, otherwise ErrFormatFailed. If ctx
// ends during mkfs the program is killed: the device held no data, and is
// afterwards either still blank (formatted on the next try) or carries a
// partial signature (refused; an operator must look).
//
// The caller must hold the volume's lock: two formats of one device must not
// race.
func (h *Host) FormatIfBlank(ctx context.Context, dev, fstype string) (FormatResult, error) {
	return h.formatIfBlank(ctx, dev, fstype, false)
}

// formatIfBlank is FormatIfBlank; readOnlyMount treats the device as
// read-only (a blank device about to be mounted "ro" is not formatted).
func (h *Host) formatIfBlank(ctx context.Context, dev, fstype string, readOnlyMount bool) (FormatResult, error) {
	if err := ValidateFSType(fstype); err != nil {
		return FormatResult{}, err
	}
	p, err := h.ProbeDevice(ctx, dev)
	if err != nil {
		return FormatResult{Probe: p}, err
	}
	probe := p
	probe.ReadOnly = p.ReadOnly || readOnlyMount
	plan, err := PlanFormat(probe, fstype)
	if err != nil {
		return FormatResult{Probe: p}, err
	}
	if !plan.Format {
		return FormatResult{FSType: plan.FSType, Probe: p}, nil
	}
	name, args, err := MkfsCommand(plan.FSType, dev)
	if err != nil {
		return FormatResult{Probe: p}, err
	}
	// Last check before writing: nobody holds the device exclusively.
	if err := claimExclusive(dev); err != nil {
		return FormatResult{Probe: p}, &Error{Class: ErrDeviceInUse, Op: "format", Device: dev, Err: err,
			Detail: "blank but held by someone (mount, device-mapper, md, swap); refusing to format"}
	}
	h.log.Info("formatting blank device", "device", dev, "fstype", plan.FSType, "size", p.Size)
	res, err := h.run.Run(ctx, name, args...)
	if err != nil {
		return FormatResult{Probe: p}, &Error{Class: ErrFormatFailed, Op: name, Device: dev, Err: err}
	}
	if res.ExitCode != 0 {
		return FormatResult{Probe: p}, &Error{Class: ErrFormatFailed, Op: name, Device: dev,
			Err: fmt.Errorf("exit code %d", res.ExitCode), Detail: trimDetail(res.Stderr)}
	}
	// Postcondition: the filesystem is there.
	chk, err := h.run.Run(ctx, "blkid", BlkidArgs(dev)...)
	if err != nil {
		return FormatResult{Probe: p}, &Error{Class: ErrFormatFailed, Op: "verify " + name, Device: dev, Err: err}
	}
	sigs, err := ParseBlkid(chk.Stdout, chk.ExitCode)
	if err != nil || len(sigs) != 1 || sigs[0].Type != plan.FSType {
		return FormatResult{Probe: p}, &Error{Class: ErrFormatFailed, Op: "verify " + name, Device: dev, Err: err,
			Detail: fmt.Sprintf("blkid after mkfs found %v, want exactly %s", sigs, plan.FSType)}
	}
	return FormatResult{Formatted: true, FSType: plan.FSType, Probe: p}, nil
}
