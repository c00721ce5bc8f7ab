package blockcmd

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	"github.com/snapvm/snapvm/block"
	"github.com/snapvm/snapvm/qmp"
)

// TransactionActionKind names the transaction actions snapvm implements
// (QEMU's dirty-bitmap and backup actions are not among them).
type TransactionActionKind string

// EnumValues lists the action kinds in schema order.
func (TransactionActionKind) EnumValues() []string {
	return []string{"abort", "blockdev-snapshot", "blockdev-snapshot-internal-sync", "blockdev-snapshot-sync"}
}

// ActionCompletionMode is QAPI's ActionCompletionMode.
type ActionCompletionMode string

// EnumValues lists the modes in schema order.
func (ActionCompletionMode) EnumValues() []string { return []string{"individual", "grouped"} }

// TransactionAction is one element of transaction's actions: the kind and
// its arguments, whose type depends on the kind.
type TransactionAction struct {
	Type TransactionActionKind `json:"type"`
	Data json.RawMessage       `json:"data"`
}

// TransactionProperties is QAPI's TransactionProperties.
type TransactionProperties struct {
	CompletionMode *ActionCompletionMode `json:"completion-mode,omitempty"`
}

// TransactionArgs is the argument of transaction.
type TransactionArgs struct {
	Actions    []TransactionAction    `json:"actions"`
	Properties *TransactionProperties `json:"properties,omitempty"`
}

// dataTypes is the argument struct of each action kind.
var dataTypes = map[TransactionActionKind]reflect.Type{
	"abort":                           reflect.TypeFor[Abort](),
	"blockdev-snapshot":               reflect.TypeFor[BlockdevSnapshot](),
	"blockdev-snapshot-internal-sync": reflect.TypeFor[BlockdevSnapshotInternal](),
	"blockdev-snapshot-sync":          reflect.TypeFor[BlockdevSnapshotSync](),
}

func (c *commands) transaction(_ context.Context, a TransactionArgs) (struct{}, error) {
	// Every action's arguments are checked before any is prepared, as
	// QEMU's input visitor does.
	actions := make([]block.Action, 0, len(a.Actions))
	for i, ta := range a.Actions {
		full := fmt.Sprintf("actions[%d].data", i)
		t := dataTypes[ta.Type]
		v, err := qmp.ParseValue(ta.Data)
		if err != nil {
			return struct{}{}, qmp.Errorf("%s", err.Error())
		}
		if err := checkStruct(t, &v, full); err != nil {
			return struct{}{}, err
		}
		p := reflect.New(t)
		if err := json.Unmarshal(ta.Data, p.Interface()); err != nil {
			return struct{}{}, qmp.Errorf("%s", err.Error())
		}
		switch d := p.Elem().Interface().(type) {
		case Abort:
			actions = append(actions, block.AbortAction{})
		case BlockdevSnapshot:
			actions = append(actions, block.SnapshotOverlay{Node: d.Node, Overlay: d.Overlay})
		case BlockdevSnapshotInternal:
			actions = append(actions, c.internalAction(d))
		case BlockdevSnapshotSync:
			actions = append(actions, syncAction(d))
		}
	}
	grouped := a.Properties != nil && a.Properties.CompletionMode != nil && *a.Properties.CompletionMode == "grouped"
	return struct{}{}, qmpError(c.g.Transaction(actions, grouped))
}

// checkStruct validates an action's data object with the QAPI input
// visitor's rules and texts: declared members in order (missing, wrong
// type, bad enum value), then undeclared ones. The action structs hold
// only strings and string enums.
func checkStruct(t reflect.Type, v *qmp.Value, full string) error {
	if v.Kind != qmp.KindObject {
		return qmp.Errorf("Invalid parameter type for '%s', expected: object", full)
	}
	var names []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		names = append(names, name)
		mv, ok := v.Get(name)
		ft := f.Type
		if !ok {
			if ft.Kind() == reflect.Pointer {
				continue
			}
			return qmp.Errorf("Parameter '%s.%s' is missing", full, name)
		}
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if mv.Kind != qmp.KindString {
			return qmp.Errorf("Invalid parameter type for '%s.%s', expected: string", full, name)
		}
		if e, isEnum := reflect.Zero(ft).Interface().(qmp.Enum); isEnum {
			found := false
			for _, s := range e.EnumValues() {
				found = found || s == mv.Str
			}
			if !found {
				return qmp.Errorf("Parameter '%s' does not accept value '%s'", name, mv.Str)
			}
		}
	}
outer:
	for _, k := range v.Keys {
		for _, n := range names {
			if n == k {
				continue outer
			}
		}
		return qmp.Errorf("Parameter '%s.%s' is unexpected", full, k)
	}
	return nil
}
