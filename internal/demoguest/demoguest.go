// Package demoguest is the guest snapvm boots when it is started without
// options: the ticker program from guests/, which prints "tick N" every
// 100 ms of guest time while dirtying RAM, so a snapshot of it is easy to
// see and to restore.
package demoguest

import "github.com/snapvm/snapvm/guests"

// Name is the demo guest's name in guests/.
const Name = "ticker"

// ELF returns the demo guest image.
func ELF() ([]byte, error) { return guests.ELF(Name) }
