# Charts of the peer comparison (bench_peers writes the .dat files).
#   gnuplot -e "dir='bench/results'" bench/peers/charts.gp
if (!exists("dir")) dir = 'bench/results'

set terminal pngcairo size 1400,620 font ",10" noenhanced
set datafile missing "-"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y
set grid ytics mytics
set key outside right top vertical
set xtics rotate by -35 scale 0
# Ten distinct colours, so that no two columns share one (gnuplot's
# default cycle has eight).
array C[10] = ["#7b2cbf", "#c77dff", "#2a9d8f", "#56b4e9", "#e69f00", "#f0e442", "#0072b2", "#d55e00", "#222222", "#999999"]
do for [i=1:10] { set linetype i lc rgb C[i] }

set output dir.'/throughput_1p.png'
set title "Throughput, 1 process (M ops/s, log scale; median of the repetitions)"
set ylabel "M ops/s"
plot for [i=2:*] dir.'/throughput_1p.dat' using i:xtic(1) title columnheader(i)

set output dir.'/throughput_2p.png'
set title "Throughput, 2 processes together (M ops/s, log scale)"
plot for [i=2:*] dir.'/throughput_2p.dat' using i:xtic(1) title columnheader(i)

set output dir.'/latency_p50_1p.png'
set title "Latency per op, p50, 1 process (ns, log scale)"
set ylabel "ns"
plot for [i=2:*] dir.'/latency_p50_1p.dat' using i:xtic(1) title columnheader(i)

set output dir.'/value_size.png'
set title "GET hit, 1 process, by value size (M ops/s, log scale)"
set style data linespoints
set logscale x 2
set xtics rotate by 0 scale 1
set xlabel "value bytes"
set ylabel "M ops/s"
plot for [i=2:*] dir.'/value_size.dat' using 1:i title columnheader(i) lw 2
