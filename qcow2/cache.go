package qcow2

// tableCache is a bounded LRU of one-cluster metadata tables (L2 tables or refcount blocks),
// keyed by host offset and kept in their on-disk (big-endian) form so lookups need no
// decoding. Memory cost: capacity * cluster size.
//
// A table returned by get or insert stays valid until capacity-1 further distinct tables
// have been inserted; callers hold at most two tables at a time and capacity is >= 4.
type tableCache struct {
	capacity int
	m        map[int64]*cachedTable
	head     cachedTable // sentinel of the LRU ring; head.next is most recent
	free     []*cachedTable
}

type cachedTable struct {
	off        int64
	buf        []byte
	dirty      bool
	prev, next *cachedTable
}

func newTableCache(capacity int) *tableCache {
	if capacity < 4 {
		capacity = 4
	}
	c := &tableCache{capacity: capacity, m: make(map[int64]*cachedTable)}
	c.head.prev, c.head.next = &c.head, &c.head
	return c
}

func (c *tableCache) unlink(t *cachedTable) {
	t.prev.next, t.next.prev = t.next, t.prev
}

func (c *tableCache) pushFront(t *cachedTable) {
	t.prev, t.next = &c.head, c.head.next
	c.head.next.prev = t
	c.head.next = t
}

func (c *tableCache) get(off int64) *cachedTable {
	t := c.m[off]
	if t != nil && c.head.next != t {
		c.unlink(t)
		c.pushFront(t)
	}
	return t
}

// victim returns the entry insert would evict, or nil when there is room.
func (c *tableCache) victim() *cachedTable {
	if len(c.m) < c.capacity {
		return nil
	}
	return c.head.prev
}

// insert adds a table for off (which must not be cached) and returns it with a buffer of
// size n whose contents the caller fills. The caller must have written back victim() if dirty.
func (c *tableCache) insert(off int64, n int) *cachedTable {
	var t *cachedTable
	if v := c.victim(); v != nil {
		c.unlink(v)
		delete(c.m, v.off)
		t = v
	} else if k := len(c.free); k > 0 {
		t = c.free[k-1]
		c.free = c.free[:k-1]
	} else {
		t = &cachedTable{buf: make([]byte, n)}
	}
	t.off, t.dirty = off, false
	c.m[off] = t
	c.pushFront(t)
	return t
}

// drop removes off from the cache without writing it back.
func (c *tableCache) drop(off int64) {
	if t := c.m[off]; t != nil {
		c.unlink(t)
		delete(c.m, off)
		t.dirty = false
		c.free = append(c.free, t)
	}
}

// dirtyTables returns the dirty entries in ascending offset order is not needed; any order.
func (c *tableCache) forEachDirty(fn func(t *cachedTable) error) error {
	for t := c.head.next; t != &c.head; t = t.next {
		if t.dirty {
			if err := fn(t); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c *tableCache) clear() {
	for off := range c.m {
		c.drop(off)
	}
}
