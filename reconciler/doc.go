// Package reconciler diffs what libvirt has attached to each domain on a
// compute host against Cinder attachments and Nova's mappings. It observes,
// plans (a pure function) and acts in three separate steps.
package reconciler
