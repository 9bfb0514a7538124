// Package deploytest checks the deployment material under deploy/ and the
// generated documentation under docs/ against the real tools and the code:
//
//   - systemd units pass `systemd-analyze verify` with no warning;
//   - the Ansible roles pass `ansible-playbook --syntax-check` and a
//     check-mode run against localhost;
//   - the Prometheus rules pass `promtool check rules` and their unit tests;
//   - every metric name in the rules and the Grafana dashboard is one the
//     code exports;
//   - docs/configuration.md matches the flags of the built binary
//     (regenerate with `go test ./deploy/deploytest -run TestConfigurationReference -update`);
//   - the managed Docker plugin builds, enables and serves a volume through
//     a real dockerd against the simulator.
//
// Tools that are missing skip the test loudly, or fail it under
// CINDERWARDEN_REQUIRE_SUBSTRATE=1 (internal/testenv).
package deploytest
