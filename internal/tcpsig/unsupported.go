package tcpsig

import "errors"

// ErrNeedsLinux is what the commands say on a system without a backend:
// the signatures are set by the Linux kernel. ProxyJump alone would not
// do: the jump host's sshd dials on unsigned.
var ErrNeedsLinux = errors.New("TCP-MD5 needs Linux; from macOS/Windows go through a Linux host: ProxyCommand ssh LINUXHOST ssh-md5-proxy %h %p (see README FAQ)")
