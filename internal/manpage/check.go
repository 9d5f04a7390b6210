package manpage

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode/utf8"
)

// One screen, a terminal's default size: a -h text that scrolls off it
// hides the usage line, the one a reader needs first.
const (
	ScreenLines   = 24
	ScreenColumns = 80
)

// Usage is one usage text of a command, as printed by -h.
type Usage struct {
	// Name is the command line it documents, for messages:
	// "ssh-md5-proxy", "ssh-md5-proxy probe".
	Name string
	// Text is the usage text.
	Text string
	// Sub is the subcommand it documents, whose "### Sub" subsection of
	// COMMANDS in the man page must name its options; "" for the main
	// usage text, whose options belong in OPTIONS or COMMANDS.
	Sub string
}

// Review checks the page p of command prog under the repository root: its
// source against the command's usage texts (Problems), then its generated
// copy against the source (Check). Each problem says what to fix.
func Review(root string, p Page, prog string, usages []Usage) []string {
	src, err := os.ReadFile(filepath.Join(root, p.Source))
	if err != nil {
		return []string{err.Error()}
	}
	probs := Problems(p.Source, prog, src, usages)
	if len(probs) > 0 {
		probs = append(probs, fmt.Sprintf("edit %s, then run %q in the repository root", p.Source, Regenerate))
	}
	if err := Check(root, p); err != nil {
		probs = append(probs, err.Error())
	}
	return probs
}

// Problems compares a man page source with the usage texts of its
// command prog and returns every difference, each as a sentence that says
// what to fix; none means the page covers them. It checks that:
//
//   - every option a usage text names (-k, --fdpass) is in the man page's
//     SYNOPSIS if the usage's synopsis has it, and is a term of a
//     definition list in OPTIONS or COMMANDS (for a subcommand's usage,
//     in that subcommand's subsection);
//   - every subcommand in a synopsis has a subsection under COMMANDS and
//     is in SYNOPSIS;
//   - EXIT STATUS documents exactly the statuses the usage texts' "Exit
//     status:" lines name;
//   - every usage text fits one screen: ScreenLines lines of at most
//     ScreenColumns columns, the rest being the man page's.
func Problems(page, prog string, src []byte, usages []Usage) []string {
	var probs []string
	add := func(format string, a ...any) {
		probs = append(probs, page+": "+fmt.Sprintf(format, a...))
	}
	synopsis := Section(src, "SYNOPSIS")
	options := Section(src, "OPTIONS")
	commands := Section(src, "COMMANDS")
	for _, sec := range []string{"NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "SEE ALSO"} {
		if strings.TrimSpace(Section(src, sec)) == "" {
			add("no %q section (a line \"# %s\" and text under it)", sec, sec)
		}
	}
	var want []int
	for _, u := range usages {
		if n := strings.Count(strings.TrimSuffix(u.Text, "\n"), "\n") + 1; n > ScreenLines {
			add("the usage text of %q is %d lines, more than one screen (%d): keep the -h text short and leave the detail to the man page", u.Name, n, ScreenLines)
		}
		for i, l := range strings.Split(u.Text, "\n") {
			if w := utf8.RuneCountInString(l); w > ScreenColumns {
				add("line %d of the usage text of %q is %d columns, more than %d: wrap it", i+1, u.Name, w, ScreenColumns)
			}
		}
		where, whereName := options+commands, "OPTIONS or COMMANDS"
		if u.Sub != "" {
			where = Subsection(commands, u.Sub)
			whereName = "COMMANDS, under \"### " + u.Sub + "\""
			if strings.TrimSpace(where) == "" {
				add("subcommand %q (usage text of %q) has no \"### %s\" subsection under COMMANDS", u.Sub, u.Name, u.Sub)
				continue
			}
		}
		for _, f := range Flags(synopsisOf(u.Text)) {
			if !HasToken(synopsis, f) {
				add("option %s is in the synopsis of %q's usage text but not in SYNOPSIS", f, u.Name)
			}
		}
		terms := Terms(where)
		for _, f := range Flags(u.Text) {
			if !HasToken(terms, f) {
				add("option %s of %q (in its usage text) is not documented in %s: add a term line \"**%s** ...\" followed by \":   what it does\"", f, u.Name, whereName, f)
			}
		}
		for _, sub := range Subcommands(u.Text, prog) {
			if strings.TrimSpace(Subsection(commands, sub)) == "" {
				add("subcommand %q of %q (in its usage text) has no \"### %s\" subsection under COMMANDS", sub, u.Name, sub)
			}
			if !HasToken(synopsis, sub) {
				add("subcommand %q of %q (in its usage text) is not in SYNOPSIS", sub, u.Name)
			}
		}
		for _, n := range ExitStatuses(u.Text) {
			if !slices.Contains(want, n) {
				want = append(want, n)
			}
		}
	}
	slices.Sort(want)
	if have := ManExitStatuses(src); !slices.Equal(have, want) {
		add("EXIT STATUS documents statuses %v (as \"**N**\" terms), the usage texts' \"Exit status:\" lines name %v", have, want)
	}
	return probs
}

// synopsisOf returns a usage text's synopsis: its lines up to the first
// blank one.
func synopsisOf(usage string) string {
	s, _, _ := strings.Cut(usage, "\n\n")
	return s
}

// Terms returns the terms of the definition lists in a markdown text: the
// lines followed by a line that starts with ":", one per line.
func Terms(text string) string {
	lines := strings.Split(text, "\n")
	var b strings.Builder
	for i := 0; i+1 < len(lines); i++ {
		if strings.TrimSpace(lines[i]) != "" && strings.HasPrefix(lines[i+1], ":") {
			b.WriteString(lines[i])
			b.WriteByte('\n')
		}
	}
	return b.String()
}
