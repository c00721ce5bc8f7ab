package main

import (
	"fmt"

	"github.com/snapvm/snapvm/internal/demoguest"
)

func demoELF() ([]byte, error) {
	b, err := demoguest.ELF()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errNoDemo, err)
	}
	return b, nil
}
