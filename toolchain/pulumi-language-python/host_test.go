package main

import (
	"os/exec"
	"testing"
)

// TestRunResponse runs real processes so the exit statuses are the kernel's, not hand-made.
func TestRunResponse(t *testing.T) {
	cases := []struct {
		name      string
		script    string
		wantBail  bool
		wantError string
	}{
		{"success", "exit 0", false, ""},
		{"already reported", "exit 32", true, ""},
		{"keyboard interrupt", "exit 130", false, "Program was interrupted"},
		{"killed by SIGINT", "kill -INT $$", false, "Program was stopped by signal: interrupt"},
		{"killed by SIGTERM", "kill -TERM $$", false, "Program was stopped by signal: terminated"},
		{"plain failure", "exit 3", false, "Program exited with non-zero exit code: 3"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := exec.Command("sh", "-c", tc.script).Run()
			got := runResponse(err, "python")
			if got.GetBail() != tc.wantBail || got.GetError() != tc.wantError {
				t.Fatalf("runResponse(%v) = bail %v, error %q; want bail %v, error %q",
					err, got.GetBail(), got.GetError(), tc.wantBail, tc.wantError)
			}
		})
	}
}

func TestRunResponseStartFailure(t *testing.T) {
	err := exec.Command("/nonexistent/python").Run()
	got := runResponse(err, "/nonexistent/python")
	want := "could not run " + execName + " with /nonexistent/python: "
	if got.GetBail() || len(got.GetError()) <= len(want) || got.GetError()[:len(want)] != want {
		t.Fatalf("runResponse(%v) = %q; want prefix %q", err, got.GetError(), want)
	}
}
