// Writes the reference .hgrm for each encoded histogram given: HdrHistogram's own
// (Java) decodeFromCompressedByteBuffer and outputPercentileDistribution(out, 5, 1.0).
// Run by regenerate.sh; its output is checked in and compared byte for byte by
// tests/golden.rs.
import java.io.FileOutputStream;
import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.Base64;
import org.HdrHistogram.Histogram;

public class Golden {
    public static void main(String[] args) throws Exception {
        for (String name : args) {
            String text = new String(Files.readAllBytes(Paths.get(name + ".b64"))).trim();
            ByteBuffer bytes = ByteBuffer.wrap(Base64.getDecoder().decode(text));
            Histogram h = Histogram.decodeFromCompressedByteBuffer(bytes, 0);
            try (PrintStream out = new PrintStream(new FileOutputStream(name + ".hgrm"), false, "US-ASCII")) {
                h.outputPercentileDistribution(out, 5, 1.0);
            }
        }
    }
}
