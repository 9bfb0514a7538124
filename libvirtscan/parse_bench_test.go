package libvirtscan

import (
	"os"
	"testing"
)

func BenchmarkParseDomain(b *testing.B) {
	for _, name := range []string{"nova-rbd-handwritten", "qemu-firmware-live", "testdriver-nova"} {
		data, err := os.ReadFile("testdata/" + name + ".xml")
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := ParseDomainBytes(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
