// Package e2e holds end-to-end tests that use only the public surfaces: the
// docker CLI, the plugin socket and HTTP.
package e2e
