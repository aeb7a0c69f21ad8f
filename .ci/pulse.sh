#!/usr/bin/env bash
# Start a PulseAudio daemon with a null sink whose .monitor source serves as a real PortAudio input device.
set -eu
if pactl info >/dev/null 2>&1; then exit 0; fi
pulseaudio -D --exit-idle-time=-1 --system=false --disallow-exit 2>/dev/null || pulseaudio -D --exit-idle-time=-1
for _ in $(seq 50); do pactl info >/dev/null 2>&1 && break; sleep 0.1; done
pactl list short sinks | grep -q mimi_sink || pactl load-module module-null-sink sink_name=mimi_sink rate=48000 >/dev/null
pactl set-default-sink mimi_sink
pactl set-default-source mimi_sink.monitor
# an idle null sink is suspended and its monitor then delivers nothing: keep it running
pactl unload-module module-suspend-on-idle 2>/dev/null || true
