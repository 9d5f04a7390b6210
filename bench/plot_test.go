//go:build bench && linux

package bench

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// writePlot draws the p50 MB/s of every case of the bulk throughput
// section as horizontal bars, one panel per link (loopback, veth), each
// with its own scale, and writes it to path as a PNG.
func writePlot(path string, rs []Result) error {
	var links []string
	byLink := map[string][]Result{}
	for _, r := range rs {
		if r.Section != tpSection || r.Unit != tpMBps {
			continue
		}
		if _, ok := byLink[r.Link]; !ok {
			links = append(links, r.Link)
		}
		byLink[r.Link] = append(byLink[r.Link], r)
	}
	if len(links) == 0 {
		return fmt.Errorf("no %q results in MB/s to plot", tpSection)
	}
	var plots [][]*plot.Plot
	for _, link := range links {
		p, err := tpPanel(link, byLink[link])
		if err != nil {
			return err
		}
		plots = append(plots, []*plot.Plot{p})
	}
	const width = 900
	height := vg.Length(0)
	for _, l := range links {
		height += vg.Length(60 + 34*len(byLink[l]))
	}
	img := vgimg.New(vg.Points(width), vg.Points(float64(height)))
	dc := draw.New(img)
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())
	tiles := draw.Tiles{Rows: len(plots), Cols: 1, PadTop: vg.Points(8), PadBottom: vg.Points(8),
		PadLeft: vg.Points(8), PadRight: vg.Points(24), PadY: vg.Points(16)}
	canvases := plot.Align(plots, tiles, dc)
	for i := range plots {
		plots[i][0].Draw(canvases[i][0])
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// tpPanel is one link's bars, the first case at the top.
func tpPanel(link string, rs []Result) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Bulk throughput, %s (p50 of %d rounds)", link, len(rs[0].Samples))
	p.X.Label.Text = "MB/s (10^6 bytes/s)"
	p.X.Min = 0
	p.Add(plotter.NewGrid())
	names := make([]string, len(rs))
	var max float64
	var label plotter.XYLabels
	for i, r := range rs {
		pos := len(rs) - 1 - i // NominalY counts from the bottom
		names[pos] = r.Case
		v := Percentile(r.Samples, 50)
		max = maxf(max, v)
		vals := make(plotter.Values, len(rs))
		vals[pos] = v
		bars, err := plotter.NewBarChart(vals, vg.Points(20))
		if err != nil {
			return nil, err
		}
		bars.Horizontal = true
		bars.Color = tpColor(r.Case)
		bars.LineStyle.Width = 0
		p.Add(bars)
		label.XYs = append(label.XYs, plotter.XY{X: v, Y: float64(pos)})
		label.Labels = append(label.Labels, " "+num(v))
	}
	labels, err := plotter.NewLabels(label)
	if err != nil {
		return nil, err
	}
	for i := range labels.TextStyle {
		labels.TextStyle[i].YAlign = draw.YCenter
	}
	p.Add(labels)
	p.X.Max = max * 1.15 // room for the labels
	p.X.Tick.Marker = plot.TickerFunc(tpTicks)
	p.NominalY(names...)
	return p, nil
}

// tpTicks marks 4 to 10 round steps (1, 2 or 5 times a power of ten).
func tpTicks(lo, hi float64) []plot.Tick {
	step := math.Pow(10, math.Floor(math.Log10((hi-lo)/4)))
	for _, m := range []float64{2, 2.5, 2} { // 1, 2, 5, 10 times the power
		if (hi-lo)/step <= 10 {
			break
		}
		step *= m
	}
	var ts []plot.Tick
	for v := math.Ceil(lo/step) * step; v <= hi; v += step {
		ts = append(ts, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'f', -1, 64)})
	}
	return ts
}

func maxf(a, b float64) float64 {
	if a > b {
		return a
	}
	return b
}

// tpColor groups the cases: unsigned baselines grey, TCP-MD5 in the
// kernel blue, through the proxy orange, ssh sessions green.
func tpColor(c string) color.Color {
	switch {
	case c == tpSSHPlain:
		return color.RGBA{150, 190, 150, 255}
	case strings.HasPrefix(c, "ssh via"):
		return color.RGBA{40, 140, 60, 255}
	case c == tpPlain:
		return color.RGBA{160, 160, 160, 255}
	case c == tpMD5:
		return color.RGBA{50, 100, 190, 255}
	}
	return color.RGBA{230, 130, 30, 255}
}
