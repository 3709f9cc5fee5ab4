//go:build !unix

package config

import "io/fs"

const openNoFollow = 0

func fileOwner(fs.FileInfo) (int, bool) { return 0, false }
