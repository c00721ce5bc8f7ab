// Package snapshote2e boots the bundled guests with qcow2 disks and drives
// internal VM snapshots end to end, on snapvm and (where it is cheap) on
// qemu-system-riscv64 for comparison:
//
//   - the snapshot-save / -load / -delete jobs: exact event sequences on a
//     running, paused and prelaunch VM, query-jobs entries, job-dismiss,
//     every error path with its text, synchronous job-id errors, and a
//     failed load leaving the guest running (jobs_test.go);
//   - restored guests continue exactly from the saved point: the ticker's
//     next tick for several tags loaded in any order and after restarting
//     snapvm on the same images (tags_test.go), diskcheck's generations and
//     self-checks across repeated saves and loads with I/O in flight, and
//     memfill's pages (checks_test.go, diskcycles_test.go);
//   - the images: qemu-img check, qemu-img snapshot -l, and qemu-img
//     snapshot -a giving the same disk as snapshot-load;
//   - HMP savevm / loadvm / delvm / info snapshots through
//     human-monitor-command, compared with QEMU 7.2 (hmp_test.go).
//
// memfill on snapvm, the slow one, needs the snapvm_e2e build tag; tests
// of known differences from QEMU 7.2 that still need fixing need
// snapvm_known_bug.
package snapshote2e
