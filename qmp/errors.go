package qmp

import (
	"errors"
	"fmt"
)

// Error classes of QEMU's QapiErrorClass. Nearly every error is GenericError.
const (
	ClassGenericError    = "GenericError"
	ClassCommandNotFound = "CommandNotFound"
	ClassDeviceNotActive = "DeviceNotActive"
	ClassDeviceNotFound  = "DeviceNotFound"
	ClassKVMMissingCap   = "KVMMissingCap"
)

// Error is a QMP error response: {"error": {"class": Class, "desc": Desc}}.
type Error struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

func (e *Error) Error() string { return e.Desc }

// Errorf returns a GenericError with a formatted description.
func Errorf(format string, args ...any) *Error {
	return &Error{Class: ClassGenericError, Desc: fmt.Sprintf(format, args...)}
}

// NewError returns an error of the given class.
func NewError(class, desc string) *Error { return &Error{Class: class, Desc: desc} }

// asError maps any handler error to a QMP error: an *Error anywhere in the chain keeps its
// class, everything else is a GenericError with the error's text.
func asError(err error) *Error {
	var qe *Error
	if errors.As(err, &qe) {
		return qe
	}
	var pe *ParseError
	if errors.As(err, &pe) {
		return &Error{Class: ClassGenericError, Desc: pe.Msg}
	}
	return &Error{Class: ClassGenericError, Desc: err.Error()}
}
