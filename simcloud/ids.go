package simcloud

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"sync"
)

// idGen makes every id the simulator hands out (resource uuids, Keystone
// hex ids, request ids, tokens) from one seeded generator, so a run with the
// same seed and the same sequence of calls yields the same ids.
type idGen struct {
	mu  sync.Mutex
	rng *rand.Rand
}

func newIDGen(seed uint64) *idGen {
	return &idGen{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

func (g *idGen) bytes(n int) []byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(g.rng.UintN(256))
	}
	return b
}

// uuid returns a random (version 4 shaped) UUID string.
func (g *idGen) uuid() string {
	b := g.bytes(16)
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// hexID returns a Keystone-style 32 hex digit id.
func (g *idGen) hexID() string { return hex.EncodeToString(g.bytes(16)) }

// requestID returns an oslo-style request id.
func (g *idGen) requestID() string { return "req-" + g.uuid() }

// token returns an opaque, Fernet-looking token.
func (g *idGen) token() string {
	return "gAAAAA" + base64.RawURLEncoding.EncodeToString(g.bytes(96))
}

// auditID returns a Keystone audit id (22 url-safe base64 characters).
func (g *idGen) auditID() string { return base64.RawURLEncoding.EncodeToString(g.bytes(16)) }

// password returns a random password.
func (g *idGen) password() string { return hex.EncodeToString(g.bytes(12)) }
