package block

// Views of the graph that whole-VM operations (VM snapshots) need.

// DeviceOrNodeName names n in messages as QEMU does: the name of a named
// backend whose root it is, else its node name.
func (g *Graph) DeviceOrNodeName(n *Node) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, b := range g.backends {
		if b.name != "" && b.root.Load() == n {
			return b.name
		}
	}
	return n.name
}

// WritableRoots lists the writable root nodes: first the roots of backends,
// in backend order, then nodes the monitor owns that nothing uses, in
// creation order. This is the device set of HMP savevm, loadvm and delvm.
func (g *Graph) WritableRoots() []*Node {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []*Node
	seen := map[*Node]bool{}
	for _, b := range g.backends {
		n := b.root.Load()
		if n != nil && !seen[n] && !n.readOnly.Load() {
			seen[n] = true
			out = append(out, n)
		}
	}
	for _, n := range g.nodes {
		if !seen[n] && n.monitorOwned && len(n.parents) == 0 && n.backends == 0 && !n.readOnly.Load() {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}
