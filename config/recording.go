package config

import "time"

// Defaults of the recording section: no call is recorded until the
// operator says so; recordings go to a folder beside the configuration
// and are kept 30 days.
const (
	DefaultRecordingMode = RecordOff
	DefaultRecordingDir  = "recordings"
	DefaultRecordingKeep = 720 * time.Hour
)

// RecordingMode is recording.mode: which calls are recorded. Load reads
// it and Validate refuses any value but the constants.
type RecordingMode string

// The values of recording.mode.
const (
	// RecordOff records no call.
	RecordOff RecordingMode = "off"
	// RecordOn records every bridged call.
	RecordOn RecordingMode = "on"
	// RecordMerchant records the calls of the merchants whose own
	// protection asks for it (record).
	RecordMerchant RecordingMode = "merchant"
)

// minRecordingKeep is the shortest recording.keep: a recording must
// outlive the call it records, whatever calls.max_duration is.
const minRecordingKeep = time.Hour

// Recording is the recording section: which calls are recorded, where
// their files go and for how long they are kept.
type Recording struct {
	// Mode is off, on (every bridged call) or merchant (as each merchant
	// chose in its protection).
	Mode RecordingMode `mapstructure:"mode"`
	// Dir is the folder of the recordings, one WAV file per call named
	// after its call record; a relative path is taken from the
	// configuration file's folder. Several nodes need one shared folder
	// so that any node can hand out any recording.
	Dir string `mapstructure:"dir"`
	// Keep is how long a recording is kept: older files are deleted.
	Keep time.Duration `mapstructure:"keep"`
}

// validateRecording checks the recording section.
func (c *Config) validateRecording(k *keyProblems) {
	r := c.Recording
	switch r.Mode {
	case RecordOff, RecordOn, RecordMerchant:
	default:
		k.bad("recording.mode", "must be off, on or merchant, got %q", r.Mode)
	}
	if r.Dir == "" {
		k.bad("recording.dir", "must name a folder for the recordings")
	}
	if r.Keep < minRecordingKeep {
		k.bad("recording.keep", "got %s, want at least %s (a recording must outlive its call)",
			FormatDuration(r.Keep), FormatDuration(minRecordingKeep))
	}
}
