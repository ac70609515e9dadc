//go:build tools

package tools

import (
	_ "github.com/emiago/sipgo"
	_ "github.com/icholy/digest"
	_ "github.com/mattn/go-sqlite3"
	_ "github.com/pion/rtp"
	_ "github.com/pion/sdp/v3"
	_ "github.com/spf13/cobra"
	_ "github.com/spf13/viper"
	_ "github.com/stretchr/testify/require"
)
