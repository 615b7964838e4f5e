# Two plots side by side against the cluster size, log-scaled; the caller
# sets `out` (the SVG) and `title` (gnuplot -e) and then draws both.
set terminal svg size 1000,420 dynamic font "sans,12"
set output out
set multiplot layout 1,2 title title
set logscale x
set xlabel "nodes"
set grid
set key top left
set yrange [0:*]
