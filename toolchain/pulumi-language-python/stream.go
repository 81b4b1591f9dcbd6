package main

import (
	"context"
	"fmt"
	"io"
	"os/exec"
)

// streamWriter forwards command output to a gRPC stream, one message per write.
type streamWriter struct {
	send func([]byte) error
}

func (w *streamWriter) Write(p []byte) (int, error) {
	// The stream may keep the slice after Send returns; give it its own copy.
	buf := append([]byte(nil), p...)
	if err := w.send(buf); err != nil {
		return 0, err
	}
	return len(p), nil
}

func runTo(
	ctx context.Context, stdout, stderr io.Writer, dir string, env []string, name string, args ...string,
) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %v: %w", name, args, err)
	}
	return nil
}
