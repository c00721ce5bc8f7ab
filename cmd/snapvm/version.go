package main

// version is snapvm's release, reported in the QMP greeting's package
// string ("snapvm <version>") and by query-version.
const version = "0.1.0"
