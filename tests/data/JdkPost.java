// POST a JSON body with the JDK's own HttpClient at its defaults (HTTP/2 preferred: over
// plain http it asks to upgrade to h2c on every request, POSTs included) and print the
// status, the protocol version used and the body, one per line. For tests/test_clients.py:
//   java tests/data/JdkPost.java URL BODY_FILE
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;

public class JdkPost {
    public static void main(String[] args) throws Exception {
        HttpClient client = HttpClient.newHttpClient();
        HttpRequest request = HttpRequest.newBuilder(URI.create(args[0]))
            .header("Content-Type", "application/json")
            .POST(HttpRequest.BodyPublishers.ofString(Files.readString(Path.of(args[1]))))
            .build();
        HttpResponse<String> response = client.send(request, HttpResponse.BodyHandlers.ofString());
        System.out.println(response.statusCode());
        System.out.println(response.version());
        System.out.println(response.body());
    }
}
